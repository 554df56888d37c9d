"""The one place that imports Keras.

TF-MOT 0.8.1 works only with Keras 2 (the ``tf_keras`` package), selected by setting
``TF_USE_LEGACY_KERAS=1`` before TensorFlow is first imported. This module sets it, then
imports TensorFlow, ``tf_keras`` and TF-MOT. Every other module gets ``tf``, ``keras`` and
``tfmot`` from here and never imports keras itself.

If TensorFlow was already imported with Keras 3 (the variable was unset at the time), the
legacy switch can no longer take effect; we raise :class:`KerasVersionError` saying so
instead of failing later inside TF-MOT with an obscure message.

TF-MOT's internals (what it does not export) are named in :mod:`tfmot_edgeplus._tfmot`.
Optional dependencies (the extras of setup.cfg) are imported where they are needed through
:func:`optional_import` / :func:`agg_pyplot`, which name the extra to install.
"""

from __future__ import annotations

import importlib
import os
import sys

_FIX = (
    "Set TF_USE_LEGACY_KERAS=1 in the environment (or import tfmot_edgeplus before "
    "tensorflow) and build models with tf_keras (`import tf_keras as keras`), not keras 3."
)


class KerasVersionError(RuntimeError):
    """Keras 3 was found where tfmot_edgeplus (and TF-MOT) need Keras 2 (tf_keras)."""


def _tensorflow_already_on_keras3() -> bool:
    if "tensorflow" not in sys.modules:
        return False
    if os.environ.get("TF_USE_LEGACY_KERAS") not in ("1", "true", "True"):
        return True
    # The variable may have been set after TensorFlow was imported: ask TensorFlow.
    tf_mod = sys.modules["tensorflow"]
    keras_mod = getattr(tf_mod, "keras", None)
    version = getattr(keras_mod, "__version__", "2")
    return str(version).startswith("3")


if _tensorflow_already_on_keras3():
    raise KerasVersionError(
        "TensorFlow was imported with Keras 3 before tfmot_edgeplus: TF-MOT needs Keras 2 "
        "(tf_keras). " + _FIX
    )

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

__all__ = [
    "KerasVersionError",
    "agg_pyplot",
    "check_keras2_model",
    "keras",
    "optional_import",
    "tf",
    "tfmot",
]


def optional_import(module: str, extra: str):
    """Import ``module``, an optional dependency installed by the extra ``extra`` of
    setup.cfg, or raise an ImportError that names the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module} cannot be imported ({exc}); it is an optional dependency of "
            f"tfmot_edgeplus, installed by `pip install 'tfmot_edgeplus[{extra}]'`."
        ) from exc


def agg_pyplot():
    """``matplotlib.pyplot`` on the Agg backend (figures to files, no display needed), from
    the ``plots`` extra."""
    optional_import("matplotlib", "plots").use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def check_keras2_model(model, what: str = "model") -> None:
    """Raise a clear error unless ``model`` is a tf_keras Sequential or Functional model.

    TF-MOT can only clone Sequential and Functional models; a Keras 3 model (``keras.Model``
    from the ``keras`` 3 package) or a subclassed model is refused here with the fix.
    """
    if not isinstance(model, keras.Model):
        module = type(model).__module__
        if module.startswith("keras") and not module.startswith("keras.src.engine"):
            raise KerasVersionError(
                f"{what} is a Keras 3 model ({type(model).__module__}.{type(model).__name__}); "
                "tfmot_edgeplus and TF-MOT need a Keras 2 model. " + _FIX
            )
        raise TypeError(
            f"{what} must be a tf_keras.Model, got {type(model).__name__!r} "
            f"(from module {module!r}). Build it with `import tf_keras as keras`."
        )
    is_sequential = isinstance(model, keras.Sequential)
    is_functional = getattr(model, "_is_graph_network", False)
    if not (is_sequential or is_functional):
        raise TypeError(
            f"{what} {model.name!r} is a subclassed model ({type(model).__name__}); TF-MOT can "
            "only quantize Sequential or Functional models. Rebuild it with "
            "keras.Sequential([...]) or keras.Model(inputs, outputs)."
        )
