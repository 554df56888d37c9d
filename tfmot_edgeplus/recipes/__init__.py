"""The four methods as one-call recipes, each one shape: a frozen ``<Method>Config``
dataclass validated on construction, a function ``<method>_<job>(..., config, verbose)``, and
a ``<Method>Run`` result with ``.config``, ``.seconds`` and ``.summary()``.

- :mod:`~tfmot_edgeplus.recipes.quarc`: QuaRC coreset QAT (``quarc_qat``);
- :mod:`~tfmot_edgeplus.recipes.cora`: CoRa low-bit PTQ + residual adapters (``cora_ptq``);
- :mod:`~tfmot_edgeplus.recipes.quantmcu`: QuantMCU patch plan (``quantmcu_pipeline``);
- :mod:`~tfmot_edgeplus.recipes.qcore`: QCore continual calibration (``qcore_continual``).
"""

from tfmot_edgeplus.recipes.cora import CoRaConfig, CoRaRun, cora_ptq
from tfmot_edgeplus.recipes.qcore import QCoreConfig, QCoreRun, qcore_continual
from tfmot_edgeplus.recipes.quantmcu import QuantMCUConfig, QuantMCURun, quantmcu_pipeline
from tfmot_edgeplus.recipes.quarc import QuaRCConfig, QuaRCRun, quarc_qat

__all__ = [  # noqa: RUF022  (grouped by method)
    "QuaRCConfig", "QuaRCRun", "quarc_qat",
    "CoRaConfig", "CoRaRun", "cora_ptq",
    "QuantMCUConfig", "QuantMCURun", "quantmcu_pipeline",
    "QCoreConfig", "QCoreRun", "qcore_continual",
]
