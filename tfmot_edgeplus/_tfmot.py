"""The one place that touches TF-MOT's internals (the seam a Keras 3 port would replace).

TF-MOT's public API (``tfmot.quantization.keras``: ``QuantizeWrapper(V2)``, ``QuantizeConfig``,
``QuantizeScheme``, ``QuantizeRegistry``, ``quantizers``, ``quantize_annotate_model``,
``quantize_apply``, ``quantize_scope``) is used from :mod:`tfmot_edgeplus._compat`'s ``tfmot``
everywhere. What TF-MOT does not export, but the scheme, CoRa and CLC need, is named here,
once, each with why: classes under ``tensorflow_model_optimization.python.core...``, and the
private attributes of a built ``QuantizeWrapper`` through accessor functions. Every internal
is present in ``tensorflow-model-optimization==0.8.1`` (the version setup.cfg pins); one
missing in the installed TF-MOT raises :class:`TFMOTVersionError` at import, naming it, the
installed version and the fix.

Keras 3 route
=============

Where we stand. TF-MOT has no Keras 3 support: 0.8.1 builds on ``tf_keras`` (its
``python/core/keras/compat.py`` sets ``TF_USE_LEGACY_KERAS=1`` and imports ``tf_keras`` when
``tf.keras`` is Keras 3), and :func:`tfmot_edgeplus._compat.check_keras2_model` refuses a
Keras 3 model with the fix. Keras 3 is installed beside it anyway (TensorFlow 2.21 requires
``keras>=3.12``), so a user can build with either by mistake.

What our code rests on, and what replacing it takes, in decreasing size:

1. **Annotate / apply / layout transforms** (``quantize_annotate_model``, ``quantize_apply``,
   :data:`ModelTransformer` with :data:`Transform` / :data:`LayerPattern` /
   :data:`LayerNode`, the n-bit layout transform that keeps fake-quant out of
   Conv/Dense -> BatchNorm -> ReLU chains, our Conv1D -> Conv2D rewrite, the
   :data:`QuantizeLayer` quantizing the model input). Keras 3 has no counterpart: the port
   needs a functional-graph rewrite of its own (``keras.models.clone_model`` with a
   ``clone_function`` for the wrapping, plus a hand-written matcher over the layer graph
   for the BatchNorm chains and the Conv1D rewrite). This is most of the work.
2. **The wrapper.** ``QuantizeWrapperV2`` builds the inner layer, asks the QuantizeConfig
   for its weights, and before each call sets the fake-quantized kernel back as an
   attribute (our ``EdgePlusWeightQuantizeConfig.set_quantize_weights`` does
   ``setattr(layer, "kernel", ...)``). In Keras 3, ``Dense.kernel`` and ``BaseConv.kernel``
   are read-only properties over ``_kernel`` (with LoRA and Keras's own quantization modes
   folded in), so attribute swapping is gone: the port needs a wrapper layer per supported
   type (Conv1D, Conv2D, DepthwiseConv2D, Dense) that computes the op itself with
   ``keras.ops`` on a fake-quantized kernel, and keeps the variables that :func:`weight_vars`
   reads today.
3. **Registry and configs.** :data:`NBitQuantizeRegistry` and its private table
   (:func:`weightless_quantize_info`) decide which weightless layers (ReLU, pooling, Add,
   Concatenate, Reshape, ...) get which tensors quantized; the port needs that table
   written out (24 entries in 0.8.1) and our ``QuantizeConfig`` subclasses turned into
   plain descriptions consumed by the new wrapper.
4. **Quantizers** port nearly as they are: they are ``tf.quantization.fake_quant_*`` calls
   and a straight-through estimator over variables the wrapper creates.
   ``keras.quantizers.fake_quant_with_min_max_vars`` (in the installed Keras 3.15, with
   trainable min/max) emits exactly those TF ops on the TensorFlow backend, so that the
   TFLite converter recognises them, as its source says. TF-MOT's ``LastValueQuantizer``
   (our min/max weights) and ``AllValuesQuantizer`` (the model input) are rewritten: about
   150 lines with their ``quant_ops`` helpers.
5. **Training loops and callbacks.** ``CLCTrainer`` and CoRa's calibration override
   ``train_step`` with ``optimizer.minimize(loss, vars, tape=tape)`` and
   ``self.compiled_metrics``; Keras 3 optimizers have no ``minimize(tape=)``, and its
   models keep only a deprecated ``compiled_metrics.update_state`` shim on the TensorFlow
   backend, without the ``.metrics`` that ``CLCTrainer.metrics`` reads (use
   ``optimizer.apply(grads, vars)`` and ``compute_loss`` / ``self.metrics``); ``train_step``
   overrides are backend-specific. The coreset callbacks and ``keras.utils.Progbar`` port
   unchanged.
6. **Conversion.** TF 2.21's ``TFLiteConverter.from_keras_model`` accepts a Keras 3 model
   (it exports through ``keras.export.ExportArchive`` with ``training=False``), so the
   FakeQuant -> int8/INT4 path survives, on the TensorFlow backend only (JAX/PyTorch
   backends have no TFLite path). ``convert()``'s walk over wrappers (weight bits,
   activation quantizers lowered to 8 bits while tracing) moves to the new wrapper.

What Keras 3 offers itself is no replacement: ``Model.quantize(mode)`` (modes ``int8``,
``float8``, ``int4``, ``gptq``, ``awq`` in Keras 3.15) is post-training and weight-centric,
implemented for Dense, EinsumDense and Embedding only (no convolutions), with no 2-3 bit
integer QAT, no per-layer activation bits, and a storage format of Keras's own, not TFLite's.
``keras.quantizers.Quantizer`` is a stateless ``__call__(x)`` base for that API.

What would break for users: the TF-MOT API we document (``quantize_apply(annotated,
EdgePlusQuantizeScheme(...))``, ``quantize_annotate_layer`` with their own
``QuantizeConfig``, ``quantize_scope``); QAT models from TF-MOT's own schemes
(``default_8bit``, ``default_n_bit``), which CLC, CoRa and ``convert()`` accept today; QAT
models saved with tf_keras, which Keras 3 cannot load as QAT models (an .h5 names TF-MOT's
wrapper classes, which do not exist there; a SavedModel loads for inference only, through
``keras.layers.TFSMLayer``): retrain, or copy the weights; the ``quant_<name>`` layer names CLC pairs layers by. A port would keep this
module's names (classes and accessors) as its seam and the public functions as they are.
"""

from __future__ import annotations

import importlib

from tfmot_edgeplus._compat import tfmot  # selects Keras 2 (tf_keras) before TF-MOT loads

REQUIRED_VERSION = "0.8.1"
_KERAS = "tensorflow_model_optimization.python.core.quantization.keras"
_N_BIT = "experimental.default_n_bit"


class TFMOTVersionError(ImportError):
    """The installed TF-MOT lacks an internal that tfmot_edgeplus uses."""


def _missing(what: str, exc: Exception) -> TFMOTVersionError:
    return TFMOTVersionError(
        f"tfmot_edgeplus uses TF-MOT's internal {what}, which the installed "
        f"tensorflow-model-optimization {getattr(tfmot, '__version__', '(unknown)')} lacks "
        f"({type(exc).__name__}: {exc}). tfmot_edgeplus is built against "
        f"tensorflow-model-optimization=={REQUIRED_VERSION}: "
        f"pip install tensorflow-model-optimization=={REQUIRED_VERSION}"
    )


def _internal(module: str, name: str):
    path = f"{_KERAS}.{module}"
    try:
        return getattr(importlib.import_module(path), name)
    except (ImportError, AttributeError) as exc:
        raise _missing(f"{path}.{name}", exc) from exc


# --- classes (none is exported by tfmot.quantization.keras) --------------------------------

#: The layer ``quantize_apply`` puts after the model input to quantize it; CLC skips it
#: when pairing layers, CoRa adds one to quantize a main-branch output TF-MOT left float.
QuantizeLayer = _internal("quantize_layer", "QuantizeLayer")
#: What TF-MOT puts in place of an activation whose quantization moved to the next layer
#: (Conv -> BatchNorm -> ReLU): CoRa must see it as "no activation" when splitting one off.
NoOpActivation = _internal("quantize_aware_activation", "NoOpActivation")
#: TF-MOT's n-bit layout transform (BatchNorm chains); our scheme's transform extends it.
NBitLayoutTransform = _internal(
    f"{_N_BIT}.default_n_bit_quantize_layout_transform", "DefaultNBitQuantizeLayoutTransform"
)
#: The n-bit registry: which weightless layers are supported and which tensors to quantize.
NBitQuantizeRegistry = _internal(
    f"{_N_BIT}.default_n_bit_quantize_registry", "DefaultNBitQuantizeRegistry"
)
#: The output config the layout transform puts on a folded BatchNorm; our scheme swaps it
#: for its own output quantizer.
NBitOutputQuantizeConfig = _internal(
    f"{_N_BIT}.default_n_bit_quantize_configs", "DefaultNBitOutputQuantizeConfig"
)
#: "Quantize nothing" config, for the reshapes around a Conv1D rewritten as a Conv2D.
NoOpQuantizeConfig = _internal(f"{_N_BIT}.default_n_bit_quantize_configs", "NoOpQuantizeConfig")
#: The pattern-matching graph rewriter the layout transforms run on, and its pieces, which
#: our Conv1D + BatchNorm transform is written in.
ModelTransformer = _internal("graph_transformations.model_transformer", "ModelTransformer")
Transform = _internal("graph_transformations.transforms", "Transform")
LayerPattern = _internal("graph_transformations.transforms", "LayerPattern")
LayerNode = _internal("graph_transformations.transforms", "LayerNode")
#: Layer -> config dict in the (legacy) format the transforms' LayerNodes hold.
serialize_layer = _internal("utils", "serialize_layer")

# Private names of the n-bit registry module, used through the functions below.
_NBitQuantizeInfo = _internal(f"{_N_BIT}.default_n_bit_quantize_registry", "_QuantizeInfo")
_n_bit_types = _internal(f"{_N_BIT}.default_n_bit_quantize_registry", "_types_dict")

_QuantizeWrapper = tfmot.quantization.keras.QuantizeWrapper  # base of QuantizeWrapperV2


def n_bit_custom_objects() -> dict:
    """The n-bit registry's types by name, for loading a saved QAT model (quantize_scope)."""
    return _n_bit_types()


def weightless_quantize_info(registry, layer) -> tuple[list, bool] | None:
    """``(activation attribute names, quantize_output)`` that the n-bit ``registry`` lists
    for ``layer``'s type, or None when it gives that type no plain entry (a QuantizeConfig
    of its own, or none). Reads the registry's private ``_layer_quantize_map``."""
    try:
        table = registry._layer_quantize_map
    except AttributeError as exc:
        raise _missing("DefaultNBitQuantizeRegistry._layer_quantize_map", exc) from exc
    info = table.get(type(layer))
    if isinstance(info, _NBitQuantizeInfo):
        return info.activation_attrs, info.quantize_output
    return None


def _built_wrapper_attr(layer, name: str, default):
    if not isinstance(layer, _QuantizeWrapper) or not layer.built:
        return default
    try:
        return getattr(layer, name)
    except AttributeError as exc:
        raise _missing(f"QuantizeWrapper.{name}", exc) from exc


def weight_vars(layer) -> list:
    """``[(weight variable, quantizer, quantizer variables), ...]`` of a built TF-MOT
    ``QuantizeWrapper``, one per weight its config quantizes (the kernel first in ours);
    ``[]`` for any other layer. The wrapper keeps them in the private ``_weight_vars``."""
    return _built_wrapper_attr(layer, "_weight_vars", [])


def kernel_variable(layer):
    """The kernel variable of ``layer``: a built wrapper's ``layer.kernel`` is the
    fake-quantized tensor, its variable is the first of :func:`weight_vars`."""
    found = weight_vars(layer)
    return found[0][0] if found else layer.kernel


def activation_quantizers(layer) -> list:
    """The quantizers of ``layer``'s activations and outputs: a built wrapper's (private
    ``_quantize_activations`` and ``_output_quantizers``), a :data:`QuantizeLayer`'s input
    quantizer; ``[]`` for any other layer."""
    if isinstance(layer, QuantizeLayer):
        return [] if layer.quantizer is None else [layer.quantizer]
    found = [qa.quantizer for qa in _built_wrapper_attr(layer, "_quantize_activations", [])]
    return found + list(_built_wrapper_attr(layer, "_output_quantizers", None) or [])


__all__ = [
    "REQUIRED_VERSION",
    "LayerNode",
    "LayerPattern",
    "ModelTransformer",
    "NBitLayoutTransform",
    "NBitOutputQuantizeConfig",
    "NBitQuantizeRegistry",
    "NoOpActivation",
    "NoOpQuantizeConfig",
    "QuantizeLayer",
    "TFMOTVersionError",
    "Transform",
    "activation_quantizers",
    "kernel_variable",
    "n_bit_custom_objects",
    "serialize_layer",
    "weight_vars",
    "weightless_quantize_info",
]
