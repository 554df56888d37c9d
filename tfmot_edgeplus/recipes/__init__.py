"""The four methods as one-call recipes, each one shape: a frozen ``<Method>Config``
dataclass validated on construction, a function ``<method>_<job>(..., config, verbose)``, and
a ``<Method>Run`` result.

- :mod:`~tfmot_edgeplus.recipes.quarc`: QuaRC coreset QAT (``quarc_qat``);
- :mod:`~tfmot_edgeplus.recipes.cora`: CoRa low-bit PTQ + residual adapters (``cora_ptq``);
- :mod:`~tfmot_edgeplus.recipes.quantmcu`: QuantMCU patch plan (``quantmcu_pipeline``);
- :mod:`~tfmot_edgeplus.recipes.qcore`: QCore continual calibration (``qcore_continual``).
"""
