"""QuantMCU patch-based inference (ALGORITHMS.md section 4).

Planning (a Keras model and calibration data -> a :class:`PatchPlan`)::

    p = patching.plan(model, x_calib, sram_budget=256 * 1024)   # search + VDPC + VDQS
    print(p.summary()); p.plot("plan.png"); p.to_json(); p.check(model)

Building blocks: :func:`read_graph` (the spatial prefix of a model), :func:`receptive_fields`,
:class:`PatchPlanner` (steps, peak-SRAM and BitOPs models, the split/grid search),
:func:`vdpc` / :func:`vdqs` (outlier patches, bits per feature map).

``model`` may also be the bytes of the full-integer .tflite (:func:`read_tflite_graph`).

Deployment: :mod:`~tfmot_edgeplus.patching.lower` turns a plan and its .tflite into a stage
program (:mod:`~tfmot_edgeplus.core.program`, the words the C executor and the
``EDGEPLUS_PATCH_STAGE`` op run), :mod:`~tfmot_edgeplus.patching.simulate` runs it in NumPy;
:mod:`~tfmot_edgeplus.patching.deploy` rewrites the model, :mod:`~tfmot_edgeplus.patching.patch_runner` runs it.

Kernels: the NumPy reference of the tflm_ops conv kernels (bit-exact with the C), on whole
tensors and on patch windows.
"""

from tfmot_edgeplus.core.conv_reference import (
    ConvArgumentError,
    ConvParams,
    conv2d,
    conv_geometry,
    conv_input_region,
    depthwise_conv2d,
    make_conv_params,
)
from tfmot_edgeplus.core.intmath import quantize_multiplier
from tfmot_edgeplus.patching.graph import (
    GraphError,
    ModelGraph,
    NoSpatialStageError,
    SpatialOp,
    read_graph,
)
from tfmot_edgeplus.patching.patch_plan import (
    LayerRecord,
    PatchPlan,
    PlanConfig,
    PlanMismatchError,
    plan,
)
from tfmot_edgeplus.patching.planner import (
    Candidate,
    PatchPlanner,
    PlanError,
    Step,
    build_steps,
    receptive_fields,
)
from tfmot_edgeplus.patching.tflite_graph import TFLiteStageRunner, read_tflite_graph
from tfmot_edgeplus.patching.vdq import StageRunner, VDPCResult, VDQSResult, vdpc, vdqs

__all__ = [  # noqa: RUF022  (grouped by use, not sorted)
    # planning
    "plan",
    "PatchPlan",
    "PlanConfig",
    "LayerRecord",
    "PlanError",
    "PlanMismatchError",
    # building blocks
    "read_graph",
    "read_tflite_graph",
    "TFLiteStageRunner",
    "ModelGraph",
    "SpatialOp",
    "GraphError",
    "NoSpatialStageError",
    "receptive_fields",
    "build_steps",
    "Step",
    "PatchPlanner",
    "Candidate",
    "StageRunner",
    "vdpc",
    "vdqs",
    "VDPCResult",
    "VDQSResult",
    # kernels (NumPy reference of tflm_ops)
    "ConvArgumentError",
    "ConvParams",
    "conv2d",
    "conv_geometry",
    "conv_input_region",
    "depthwise_conv2d",
    "make_conv_params",
    "quantize_multiplier",
]
