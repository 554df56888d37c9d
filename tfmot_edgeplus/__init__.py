"""tfmot_edgeplus: 2-4 bit Keras models onto microcontrollers, with little data.

Grouped by use; everything here is a re-export.

Quantization-aware training (TF-MOT)::

    scheme = tfmot_edgeplus.EdgePlusQuantizeScheme(weight_bits=4, activation_bits=8)
    qat = tfmot_edgeplus.quantize_model(model, scheme)
    qat.fit(..., callbacks=[tfmot_edgeplus.BestWeights(x_held, y_held)])  # never ends worse
    with tfmot_edgeplus.quantize_scope(): keras.models.load_model(path)

Little-data QAT (QuaRC): ``coreset.RESCoreset`` / ``coreset.RandomCoreset`` and
``CLCTrainer(student, teacher)`` (knowledge distillation + cascaded layer correction);
``quarc_qat(fp_model, x, y, QuaRCConfig(...))`` runs the whole recipe.

Low-bit PTQ + residual adapters (CoRa): ``adapters.add_residual_adapters(qat, fp_model)``
and ``adapters.calibrate(model, x)``; ``cora_ptq(fp_model, x, y, CoRaConfig(...))`` runs
the whole recipe.

On-device continual calibration (QCore): ``coreset.QuantMissTracker`` during float training,
``calibration.BitFlipCalibrator(tflite_bytes)`` (flip networks trained offline, bit-flip
steps on the device); ``qcore_continual(QCoreConfig(...))`` runs the whole recipe on a
stream of new subjects.

Patch-based inference (QuantMCU): ``patching.plan(tflite_bytes, x_calib)`` plans the patch
stage (VDPC + VDQS); ``quantmcu_pipeline(QuantMCUConfig(...))`` runs the whole recipe.

Every recipe has one shape: a frozen ``<Method>Config`` validated on construction, one function
taking it (``config=None`` means the defaults) and ``verbose``, and a ``<Method>Run`` result with
``.config``, ``.seconds`` and ``.summary()`` (see :mod:`tfmot_edgeplus.recipes`).

Conversion (wraps tf.lite.TFLiteConverter) and the host TFLM runner::

    tflite_bytes = tfmot_edgeplus.convert(qat, representative_data)
    tfmot_edgeplus.runtime.TFLMRunner(tflite_bytes).predict(x)
"""

from tfmot_edgeplus._compat import KerasVersionError  # noqa: I001  (sets TF_USE_LEGACY_KERAS first)
from tfmot_edgeplus.quantization import (
    BestWeights,
    EdgePlusQuantizeScheme,
    quantize_model,
    quantize_scope,
)
from tfmot_edgeplus.conversion import (
    ConversionReport,
    conversion_report,
    convert,
    describe_placement,
)
from tfmot_edgeplus.distillation import CLCTrainer
from tfmot_edgeplus.recipes import (
    CoRaConfig,
    QCoreConfig,
    QuantMCUConfig,
    QuaRCConfig,
    cora_ptq,
    qcore_continual,
    quantmcu_pipeline,
    quarc_qat,
)
from tfmot_edgeplus import (
    adapters,
    calibration,
    conversion,
    core,
    coreset,
    datasets,
    distillation,
    patching,
    recipes,
    runtime,
)

from tfmot_edgeplus._version import __version__ as __version__  # one place; setup.cfg reads it

__all__ = [  # noqa: RUF022  (grouped by use, not sorted)
    # errors
    "KerasVersionError",
    # quantization-aware training
    "EdgePlusQuantizeScheme",
    "quantize_model",
    "quantize_scope",
    "BestWeights",
    # conversion
    "convert",
    "conversion_report",
    "ConversionReport",
    "describe_placement",
    # little-data QAT (QuaRC)
    "CLCTrainer",
    "QuaRCConfig",
    "quarc_qat",
    # low-bit PTQ + residual adapters (CoRa)
    "CoRaConfig",
    "cora_ptq",
    # on-device continual calibration (QCore)
    "QCoreConfig",
    "qcore_continual",
    # patch-based inference on the MCU (QuantMCU)
    "QuantMCUConfig",
    "quantmcu_pipeline",
    # subpackages
    "adapters",
    "calibration",
    "conversion",
    "core",
    "coreset",
    "datasets",
    "distillation",
    "patching",
    "recipes",
    "runtime",
]
