"""``add_residual_adapters``: a new functional model with CoRa branches beside the low-bit layers.

For every adapted layer ``L`` (a TF-MOT ``QuantizeWrapperV2`` around a Conv1D, Conv2D or
Dense) the new model computes ``main(x) + B(A(x))`` where ``A`` has ``L``'s type and geometry
(kernel size, strides, padding, dilation; ``in -> r``, no bias) and ``B`` is a 1x1 conv /
Dense (``r -> out``, no bias), initialised from the SVD of the residual (``svd.py``).

Design choices (the paper is silent on them; they are ours):

* **Where the Add goes.** (1) ``L`` followed directly by a BatchNormalization that is its only
  consumer (TF-MOT's Conv -> BN handling, ``small_cnn``): after the BN, with the residual
  scaled per output channel by ``gamma / sqrt(var + eps)`` before the SVD. Inference-mode
  BN is affine, so ``BN(conv_W x) - BN(conv_QW x) = diag(gamma/sigma) conv_dW x``: the
  branch is exact at full rank, and the converter still folds the BN into the main conv.
  (2) ``L`` with a linear activation: after ``L``. (3) ``L`` with a non-linear activation
  (``conv3`` with ReLU): ``L`` is rebuilt with a linear activation (a copy of its weights and
  quantizer state, not shared), the Add goes before the activation, which becomes its own
  layer after the Add; TFLite fuses it into the ADD.
* **Quantization of the branch** (``adapter_bits``, default 8): ``A`` and ``B`` are
  ``QuantizeWrapperV2`` with our ``EdgePlusWeightQuantizeConfig`` (min/max ranges, the
  scheme's channel axis for that layer type), so TFLite gets int8 CONV_2D / FULLY_CONNECTED
  + ADD. Every tensor of the branch is fake-quantized as TFLite will store it: ``A``'s and
  ``B``'s outputs, the main output (a ``QuantizeLayer`` where TF-MOT left it unquantized,
  i.e. after a BN) and the Add's output, except when the Add's only consumer is an
  output-quantized ReLU / Activation (as TF-MOT does for Add -> ReLU), which TFLite fuses.
  ``adapter_bits=None`` leaves ``A`` and ``B`` in float (for analysis; the converter would
  then have to calibrate them).
* **The residual** is ``W_fp - Q(W_qat)``: the FP model's kernel minus the deployed
  quantized kernel of ``qat_model`` (the same thing after PTQ; after QAT the adapters reclaim
  what separates the deployed layer from the teacher). Min/max weight ranges are set from the
  kernels first (what the first training step or ``calibrate_activation_ranges`` would do),
  unset LSQ steps by minimum MSE (as ``initialize_learned_scales``): ``qat_model``'s variables change only there.
* **Sharing.** The new model reuses ``qat_model``'s layer objects (and so its variables)
  except the rebuilt ones of case (3): training the new model trains those shared
  variables too (``calibrate`` trains only adapters, plus LSQ steps if asked, and moves
  activation ranges). ``qat_model``'s graph is not changed.
* **DepthwiseConv2D is not adapted.** Per channel its kernel is one ``1 x kh*kw`` row (rank
  1): there is no rank to cut, and the cheapest exact branch is a second depthwise conv
  with the whole residual, as many parameters as the main layer (twice its bytes at int8
  beside a 4-bit main layer). A cross-channel low-rank form needs a per-channel (grouped)
  ``r -> 1`` mix, which is no builtin TFLite op. ``layers="all"`` skips depthwise layers
  (recorded in ``skipped``); naming one is an error. Grouped convs are skipped likewise.
* **New activation ranges** (``A``/``B`` outputs, main output, Add) start uninitialised:
  ``calibrate`` sets them from its data first (``calibrate_activation_ranges``); call that
  yourself before evaluating an adapted model you do not calibrate.
* **Ranks**: ``rank=int`` for all, ``{name: r}`` per layer (absent or 0: no adapter),
  ``"full"``, or ``None``: :func:`~tfmot_edgeplus.adapters.svd.allocate_ranks` under
  ``budget``. The paper's differentiable Butterworth search is
  :func:`~tfmot_edgeplus.adapters.rank_search.search_ranks`, whose ``.ranks`` go in ``rank``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from tfmot_edgeplus import _tfmot
from tfmot_edgeplus._compat import check_keras2_model, keras, tf, tfmot
from tfmot_edgeplus.adapters import svd as svd_lib
from tfmot_edgeplus.quantization.configs import (
    EdgePlusOutputQuantizeConfig,
    EdgePlusWeightQuantizeConfig,
)
from tfmot_edgeplus.quantization.quantizers import (
    WEIGHT_BITS,
    ActivationRangeQuantizer,
    LearnedScaleWeightQuantizer,
    check_bits,
)

_QuantizeWrapper = tfmot.quantization.keras.QuantizeWrapperV2
_AnyQuantizeWrapper = tfmot.quantization.keras.QuantizeWrapper

#: Layer types the adapter supports, with the channel axis our scheme quantizes them on
#: (same table as ``quantization/registry.py``).
ADAPTED_TYPES = {
    keras.layers.Conv1D: None,
    keras.layers.Conv2D: -1,
    keras.layers.Dense: None,
}
_WEIGHTED_TYPES = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                   keras.layers.Dense)
_SUFFIXES = ("_cora_a", "_cora_b", "_cora_add", "_cora_main_quant", "_cora_act")
_FUSABLE_ACTIVATIONS = ("relu", "relu6")


@dataclass(frozen=True)
class AdapterRecord:
    """What :func:`add_residual_adapters` did; stored as ``model.cora`` on the new model.

    Attributes:
      ranks: ``{layer name: rank}`` for every considered layer (0 = no adapter).
      placement: ``{layer name: "after_bn:<bn name>" | "after_layer" | "split_activation"}``.
      skipped: ``{layer name: reason}`` for weighted layers that got no adapter by design.
      adapter_layers: names (in the new model) of the ``A`` / ``B`` layers, which
        ``calibrate`` trains.
      fp_model: the FP model (KD teacher of ``calibrate``). Not saved with the model.
      adapter_bits: weight bits of ``A``/``B`` (None = float).
      budget: the budget used for the allocation (None when ranks were given).
      adapter_params: parameters of all ``A`` and ``B`` kernels.
      adapted_kernel_params: parameters of the considered layers' main kernels.
      residual_energy_kept: ``{name: fraction of ||dW||_F^2 captured by the rank}``.
    """

    ranks: dict
    placement: dict
    skipped: dict
    adapter_layers: tuple
    fp_model: object = field(repr=False)
    adapter_bits: int | None
    budget: float | None
    adapter_params: int
    adapted_kernel_params: int
    residual_energy_kept: dict

    @property
    def param_fraction(self) -> float:
        """``adapter_params / adapted_kernel_params``."""
        return self.adapter_params / max(self.adapted_kernel_params, 1)

    @property
    def adapter_bytes(self) -> float:
        """Bytes of the adapter kernels at ``adapter_bits`` (4 bytes each in float)."""
        bits = 32 if self.adapter_bits is None else self.adapter_bits
        return self.adapter_params * bits / 8.0


# ---------------------------------------------------------------- validation
def check_budget(budget) -> float:
    """``budget`` (a fraction of the model's parameters, in (0, 1]) as a float, or a clear
    TypeError / ValueError naming the value."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real):
        raise TypeError(f"budget must be a number in (0, 1], got {budget!r}.")
    if not 0.0 < float(budget) <= 1.0:
        raise ValueError(
            f"budget must be in (0, 1] (adapter parameters as a fraction of the adapted kernels' "
            f"parameters), got {budget!r}. Use e.g. budget=0.05 for 5 %."
        )
    return float(budget)


def _check_rank_value(value, name, limit, allow_zero):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"rank for layer {name!r} must be an int, got {value!r}.")
    low = 0 if allow_zero else 1
    if not low <= int(value) <= limit:
        raise ValueError(
            f"rank {int(value)} for layer {name!r} is outside [{low}, {limit}]: its residual is "
            f"a {limit}-rank matrix at most (min(in*kh*kw, out) = {limit}). Use a rank <= {limit}"
            + (" (0 = no adapter)." if allow_zero else ", or a dict {layer_name: rank}.")
        )
    return int(value)


def _check_quantized(qat_model):
    if isinstance(qat_model, keras.Model) and not any(
        isinstance(layer, _AnyQuantizeWrapper) for layer in qat_model.layers
    ):
        raise ValueError(
            f"qat_model {qat_model.name!r} is not quantized (it has no QuantizeWrapperV2 layers). "
            "Call tfmot_edgeplus.quantize_model(fp_model, EdgePlusQuantizeScheme(weight_bits=4)) "
            "first and pass its result."
        )
    check_keras2_model(qat_model, "qat_model")
    existing = [layer.name for layer in qat_model.layers if layer.name.endswith(_SUFFIXES)]
    if existing:
        raise ValueError(
            f"qat_model {qat_model.name!r} already has CoRa adapter layers ({existing[:3]}...); "
            "pass the QAT model without adapters."
        )


def _unsupported_reason(inner) -> str | None:
    if isinstance(inner, keras.layers.DepthwiseConv2D):
        return (
            "DepthwiseConv2D: per channel its kernel is a single 1 x (kh*kw) row (rank 1), so "
            "there is no rank to cut; an exact branch costs as many parameters as the layer "
            "itself and a cross-channel low-rank branch is no builtin TFLite op"
        )
    if getattr(inner, "groups", 1) != 1:
        return f"grouped convolution (groups={inner.groups}): the adapter supports groups=1 only"
    if getattr(inner, "data_format", "channels_last") != "channels_last":
        return "data_format='channels_first': the adapter supports channels_last only"
    return None


# ---------------------------------------------------------------- graph helpers
def _model_nodes(model):
    nodes = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        nodes.extend(model._nodes_by_depth[depth])
    return nodes


def _consumers(nodes):
    found = {}
    for node in nodes:
        for tensor in node.keras_inputs:
            found.setdefault(id(tensor), []).append(node)
    return found


def _activation_name(inner) -> str:
    act = inner.activation
    act = getattr(act, "activation", act)  # TF-MOT's QuantizeAwareActivation keeps the original
    if isinstance(act, _tfmot.NoOpActivation):
        return "noop"
    return keras.activations.serialize(act) if not isinstance(act, str) else act


def _fusable_consumer(consumers) -> bool:
    """True when the only consumer is an output-quantized ReLU/Activation TFLite fuses."""
    if len(consumers) != 1:
        return False
    layer = consumers[0].layer
    if not isinstance(layer, _AnyQuantizeWrapper):
        return False
    inner = layer.layer
    quantizes_output = bool(getattr(layer.quantize_config, "quantize_output", False))
    if isinstance(inner, keras.layers.ReLU):
        return quantizes_output and inner.negative_slope == 0 and inner.threshold == 0
    if isinstance(inner, keras.layers.Activation):
        return quantizes_output and _activation_name(inner) in _FUSABLE_ACTIVATIONS
    return False


def _quantized_kernel(wrapper) -> tuple[np.ndarray, np.ndarray]:
    """(latent kernel, Q(kernel)) of a wrapper, with its weight ranges set from the kernel."""
    weight, quantizer, quantizer_vars = _tfmot.weight_vars(wrapper)[0]
    if isinstance(quantizer, LearnedScaleWeightQuantizer):
        if float(quantizer_vars["initialized"].numpy()) < 0.5:
            quantizer.initialize(weight, quantizer_vars)
    else:
        # Min/max (last value) quantizers hold placeholder ranges until a training call.
        quantizer(weight, training=True, weights=quantizer_vars)
    quantized = quantizer(weight, training=False, weights=quantizer_vars)
    return weight.numpy(), np.asarray(quantized)


def _bn_scale(bn) -> np.ndarray:
    """Per-channel ``gamma / sqrt(moving_var + eps)`` of an inference-mode BatchNorm."""
    axis = list(bn.axis) if isinstance(bn.axis, (list, tuple)) else [bn.axis]
    rank = len(bn.input_shape)
    if [a % rank for a in axis] != [rank - 1]:
        raise ValueError(
            f"BatchNormalization {bn.name!r} normalises axes {axis} of a rank-{rank} tensor; the "
            "adapter can only move the Add after a BatchNorm over the last (channel) axis.")
    variance = bn.moving_variance.numpy()
    gamma = bn.gamma.numpy() if bn.scale else np.ones_like(variance)
    return gamma / np.sqrt(variance + bn.epsilon)


# ---------------------------------------------------------------- branch construction
def _make_branch_layers(name, inner, rank, out, adapter_bits, activation_bits):
    kind = type(inner)
    if kind is keras.layers.Conv2D or kind is keras.layers.Conv1D:
        a = kind(rank, inner.kernel_size, strides=inner.strides, padding=inner.padding,
                 dilation_rate=inner.dilation_rate, use_bias=False, name=f"{name}_cora_a")
        b = kind(out, 1, use_bias=False, name=f"{name}_cora_b")
    else:
        a = keras.layers.Dense(rank, use_bias=False, name=f"{name}_cora_a")
        b = keras.layers.Dense(out, use_bias=False, name=f"{name}_cora_b")
    if adapter_bits is None:
        return a, b
    axis = ADAPTED_TYPES[kind]

    def wrap(layer):
        config = EdgePlusWeightQuantizeConfig("kernel", adapter_bits, activation_bits, False, axis)
        return _QuantizeWrapper(layer, config)

    return wrap(a), wrap(b)


def _set_kernel(layer, value):
    kernel = _tfmot.kernel_variable(layer)
    kernel.assign(np.reshape(value, kernel.shape))
    if isinstance(layer, _AnyQuantizeWrapper):
        _quantized_kernel(layer)  # ranges from the new kernel


def _activation_bits(wrapper) -> int:
    bits = getattr(wrapper.quantize_config, "activation_bits", 8)
    return int(bits) if bits in (4, 8) else 8


# ---------------------------------------------------------------- public
def _adapted_model(qat_model, fp_model, budget, rank, layers, adapter_bits, gate=None):
    """:func:`add_residual_adapters`; ``gate(name, rank)``, if given, returns a layer put
    between each ``A`` and ``B`` (the rank search's Butterworth gate)."""
    _check_quantized(qat_model)
    check_keras2_model(fp_model, "fp_model")
    budget = check_budget(budget)
    if adapter_bits is not None:
        adapter_bits = check_bits(adapter_bits, WEIGHT_BITS, "adapter_bits")

    wrappers = {
        layer.layer.name: layer
        for layer in qat_model.layers
        if isinstance(layer, _AnyQuantizeWrapper) and isinstance(layer.layer, _WEIGHTED_TYPES)
    }
    supported = {n: w for n, w in wrappers.items() if _unsupported_reason(w.layer) is None}
    skipped = {n: _unsupported_reason(w.layer) for n, w in wrappers.items() if n not in supported}

    # --- which layers
    if isinstance(layers, str) and layers == "all":
        selected = list(supported)
    elif isinstance(layers, (list, tuple)) and all(isinstance(n, str) for n in layers):
        selected = []
        for given in layers:
            name = given[len("quant_"):] if given.startswith("quant_") and given[6:] in wrappers else given
            if name in skipped:
                raise ValueError(f"layers names {given!r}, which the adapter does not support: "
                                 f"{skipped[name]}. Remove it from `layers`.")
            if name not in supported:
                raise ValueError(
                    f"layers names {given!r}, which is not a quantized Conv1D/Conv2D/Dense of "
                    f"qat_model {qat_model.name!r}. Adaptable layers: {sorted(supported)}.")
            if name not in selected:
                selected.append(name)
        skipped = {}
    else:
        raise TypeError(f"layers must be 'all' or a list of layer names, got {layers!r}.")
    if not selected:
        raise ValueError(f"qat_model {qat_model.name!r} has no layer the adapter supports "
                         f"(Conv1D, Conv2D, Dense); skipped: {skipped}.")

    # --- the FP model must match
    for name in selected:
        inner = supported[name].layer
        try:
            fp_layer = fp_model.get_layer(name)
        except ValueError:
            raise ValueError(
                f"fp_model {fp_model.name!r} has no layer {name!r}, which qat_model has: pass the "
                "FP model qat_model was quantized from.") from None
        fp_kernel = _fp_kernel(fp_layer, inner)
        if fp_kernel is None:
            fp_kernel = getattr(fp_layer, "kernel", None)
            raise ValueError(
                f"fp_model layer {name!r} is {type(fp_layer).__name__} with kernel "
                f"{None if fp_kernel is None else tuple(fp_kernel.shape)}, but qat_model's is "
                f"{type(inner).__name__} with kernel {tuple(inner.kernel.shape)}: pass the FP "
                "model qat_model was quantized from.")

    nodes = _model_nodes(qat_model)
    consumers = _consumers(nodes)
    node_of = {id(node.layer): node for node in nodes if not node.is_input}

    # --- placement and residual SVD per layer
    placement, svds = {}, {}
    for name in selected:
        wrapper = supported[name]
        inner = wrapper.layer
        out_node = node_of[id(wrapper)]
        users = consumers.get(id(out_node.outputs), [])
        activation = _activation_name(inner)
        scale = None
        if activation in ("linear", "noop"):
            placement[name] = "after_layer"
            if len(users) == 1 and isinstance(users[0].layer, _AnyQuantizeWrapper) and \
                    isinstance(users[0].layer.layer, keras.layers.BatchNormalization):
                bn = users[0].layer.layer
                placement[name] = f"after_bn:{users[0].layer.name}"
                scale = _bn_scale(bn)
        else:
            placement[name] = "split_activation"
        _, quantized = _quantized_kernel(wrapper)
        svds[name] = svd_lib.residual_svd(_fp_kernel(fp_model.get_layer(name), inner), quantized,
                                          scale)

    # --- ranks
    limits = {name: svds[name].max_rank for name in selected}
    kernel_params = sum(int(np.prod(svds[n].kernel_shape)) for n in selected)
    used_budget = None
    if rank is None:
        used_budget = budget
        budget_params = int(np.floor(budget * kernel_params))
        ranks = svd_lib.allocate_ranks({n: svds[n] for n in selected}, budget_params)
        if not any(ranks.values()):
            cheapest = min(svd_lib.adapter_params(svds[n].kernel_shape, 1) for n in selected)
            raise ValueError(
                f"budget={budget} allows {budget_params} adapter parameters, less than the "
                f"cheapest rank-1 adapter ({cheapest}): raise budget or give rank= explicitly.")
    elif isinstance(rank, dict):
        unknown = sorted(set(rank) - set(selected))
        if unknown:
            raise ValueError(f"rank names layers that are not adapted: {unknown}; adapted "
                             f"layers: {selected}.")
        ranks = {n: _check_rank_value(rank.get(n, 0), n, limits[n], True) for n in selected}
        if not any(ranks.values()):
            raise ValueError(f"rank={rank!r} gives every layer rank 0: nothing to adapt.")
    elif isinstance(rank, str) and rank == "full":
        ranks = dict(limits)
    else:
        ranks = {n: _check_rank_value(rank, n, limits[n], False) for n in selected}

    # --- rebuild the graph
    new_inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.node.layer.name)
                  if hasattr(t, "node") else keras.Input(shape=t.shape[1:], dtype=t.dtype)
                  for t in qat_model.inputs]
    tensors = {id(old): new for old, new in zip(qat_model.inputs, new_inputs)}
    after_bn = {placement[n].split(":", 1)[1]: n for n in selected
                if ranks[n] and placement[n].startswith("after_bn:")}
    pending = {}
    adapter_layers = []
    keras_tensor_type = type(qat_model.inputs[0])

    def mapped(structure):
        return tf.nest.map_structure(
            lambda t: tensors[id(t)] if isinstance(t, keras_tensor_type) else t, structure)

    def branch(name, x):
        wrapper = supported[name]
        inner = wrapper.layer
        out = int(inner.kernel.shape[-1])
        a, b = _make_branch_layers(name, inner, ranks[name], out, adapter_bits,
                                   _activation_bits(wrapper))
        hidden = a(x)
        if gate is not None:
            hidden = gate(name, ranks[name])(hidden)
        y = b(hidden)
        a_kernel, b_matrix = svds[name].factors(ranks[name])
        _set_kernel(a, a_kernel)
        _set_kernel(b, b_matrix)
        adapter_layers.extend([a.name, b.name])
        return y

    def add(name, main, residual, fused):
        config = EdgePlusOutputQuantizeConfig((), quantize_output=not fused,
                                              activation_bits=_activation_bits(supported[name]))
        return _QuantizeWrapper(keras.layers.Add(name=f"{name}_cora_add"), config)([main, residual])

    def quantize_main(name, tensor):
        quantizer = ActivationRangeQuantizer(_activation_bits(supported[name]))
        return _tfmot.QuantizeLayer(quantizer, name=f"{name}_cora_main_quant")(tensor)

    for node in nodes:
        if node.is_input:
            continue
        layer = node.layer
        args, kwargs = mapped((node.call_args, node.call_kwargs))
        inner_name = layer.layer.name if isinstance(layer, _AnyQuantizeWrapper) else None
        users = consumers.get(id(node.outputs), [])
        if inner_name in ranks and ranks[inner_name] and placement[inner_name] == "split_activation":
            x = args[0]
            old_config = layer.quantize_config
            fp_config = fp_model.get_layer(inner_name).get_config()
            fp_config["activation"] = "linear"
            new_inner = type(layer.layer).from_config(fp_config)
            new_wrapper = _QuantizeWrapper(new_inner, type(old_config).from_config(old_config.get_config()))
            main = new_wrapper(x)
            # A wrapped layer's ``kernel`` attribute is the quantized tensor (its ``weights``
            # lose the kernel): copy the kernel variable and its quantizer's, the bias apart.
            old_kernel, _, old_vars = _tfmot.weight_vars(layer)[0]
            new_kernel, _, new_vars = _tfmot.weight_vars(new_wrapper)[0]
            new_kernel.assign(old_kernel)
            if getattr(layer.layer, "use_bias", False):
                new_inner.bias.assign(layer.layer.bias)
            for key, variable in old_vars.items():
                new_vars[key].assign(variable)
            summed = add(inner_name, main, branch(inner_name, x), fused=True)
            act_config = EdgePlusOutputQuantizeConfig((), True, _activation_bits(layer))
            act = keras.layers.Activation(_activation_name(layer.layer), name=f"{inner_name}_cora_act")
            out = _QuantizeWrapper(act, act_config)(summed)
        elif inner_name in ranks and ranks[inner_name] and placement[inner_name] == "after_layer":
            x = args[0]
            main = layer(*args, **kwargs)
            if _activation_name(layer.layer) == "noop":
                main = quantize_main(inner_name, main)
            out = add(inner_name, main, branch(inner_name, x), fused=_fusable_consumer(users))
        elif ranks.get(inner_name):  # after_bn: remember the branch input
            pending[inner_name] = args[0]
            out = layer(*args, **kwargs)
        elif layer.name in after_bn:
            name = after_bn[layer.name]
            main = quantize_main(name, layer(*args, **kwargs))
            out = add(name, main, branch(name, pending.pop(name)), fused=_fusable_consumer(users))
        else:
            out = layer(*args, **kwargs)
        for old, new in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(out)):
            tensors[id(old)] = new

    outputs = [tensors[id(t)] for t in qat_model.outputs]
    model = keras.Model(new_inputs, outputs if len(outputs) > 1 else outputs[0],
                        name=f"{qat_model.name}_cora")
    adapted = {n: r for n, r in ranks.items() if r}
    record = AdapterRecord(
        ranks=dict(ranks),
        placement={n: placement[n] for n in adapted},
        skipped=dict(skipped),
        adapter_layers=tuple(adapter_layers),
        fp_model=fp_model,
        adapter_bits=adapter_bits,
        budget=used_budget,
        adapter_params=sum(svd_lib.adapter_params(svds[n].kernel_shape, r) for n, r in adapted.items()),
        adapted_kernel_params=kernel_params,
        residual_energy_kept={
            n: float(np.sum(svds[n].s[:r] ** 2) / max(np.sum(svds[n].s ** 2), 1e-30))
            for n, r in ranks.items()},
    )
    model.cora = record
    model.adapter_ranks = adapted
    return model


def _fp_kernel(fp_layer, inner) -> np.ndarray | None:
    """``fp_layer``'s kernel in the shape of the quantized model's ``inner`` layer, or None if
    they do not match. A Conv1D followed by a BatchNorm is a Conv2D with kernel ``(1, k, in,
    out)`` in the quantized model (:mod:`tfmot_edgeplus.quantization.transforms`)."""
    kernel = getattr(fp_layer, "kernel", None)
    if kernel is None:
        return None
    kernel = kernel.numpy()
    if isinstance(fp_layer, keras.layers.Conv1D) and isinstance(inner, keras.layers.Conv2D):
        kernel = kernel[None]
    elif type(fp_layer) is not type(inner):
        return None
    return kernel if kernel.shape == tuple(inner.kernel.shape) else None


def add_residual_adapters(qat_model, fp_model, budget=0.05, rank=None, layers="all",
                          adapter_bits=8):
    """Return a new model: ``qat_model`` with a CoRa low-rank residual branch per layer.

    Args:
      qat_model: QAT model from :func:`tfmot_edgeplus.quantize_model` (or TF-MOT's
        ``quantize_apply``); its layer objects are reused, its graph is not changed.
      fp_model: the float model ``qat_model`` was quantized from (same layer names and kernel
        shapes): the source of ``W`` in ``dW = W - Q(W)`` and ``calibrate``'s KD teacher.
      budget: adapter parameters as a fraction of the adapted layers' kernel parameters, in
        (0, 1]; used to allocate ranks when ``rank`` is None.
      rank: None (allocate under ``budget``), an int for every adapted layer, a dict
        ``{layer_name: rank}`` (absent or 0: no adapter; e.g. ``search_ranks(...).ranks``),
        or ``"full"`` (every layer at its largest rank: the exact residual).
      layers: ``"all"`` (every supported quantized layer) or a list of layer names (FP names
        such as ``"conv1"``, or wrapper names such as ``"quant_conv1"``).
      adapter_bits: weight bits of the adapter kernels (8; 2, 3, 4 also accepted), or None
        for float adapters.

    Returns:
      A functional ``keras.Model`` named ``<qat_model.name>_cora`` with attributes ``cora``
      (an :class:`AdapterRecord`) and ``adapter_ranks`` (``{name: rank}``, adapted layers).
    """
    return _adapted_model(qat_model, fp_model, budget, rank, layers, adapter_bits)


def adapter_record(model) -> AdapterRecord:
    """The :class:`AdapterRecord` of a model from :func:`add_residual_adapters`."""
    record = getattr(model, "cora", None)
    if not isinstance(record, AdapterRecord):
        raise ValueError(  # noqa: TRY004  (a model without adapters is a bad value, not type)
            f"model {getattr(model, 'name', model)!r} has no CoRa adapters: build it with "
            "tfmot_edgeplus.adapters.add_residual_adapters(qat_model, fp_model).")
    return record


__all__ = ["ADAPTED_TYPES", "AdapterRecord", "adapter_record", "add_residual_adapters"]
