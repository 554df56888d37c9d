"""QuantMCU patch-based inference (ALGORITHMS.md section 4).

Planning (a Keras model and calibration data -> a :class:`PatchPlan`)::

    p = patching.plan(model, x_calib, sram_budget=256 * 1024)   # search + VDPC + VDQS
    print(p.summary()); p.plot("plan.png"); p.to_json(); p.check(model)

Building blocks: :func:`read_graph` (the spatial prefix of a model), :func:`receptive_fields`,
:class:`PatchPlanner` (steps, peak-SRAM, BitOPs and M4-instruction models, the split/grid
search with the halo recomputation bounded by ``max_halo``), :func:`vdpc` / :func:`vdqs`
(outlier patches, bits per feature map), :mod:`~tfmot_edgeplus.patching.cost_model` (our
kernels' measured instructions per MAC).

``model`` may also be the bytes of the full-integer .tflite (:func:`read_tflite_graph`).

Deployment: :mod:`~tfmot_edgeplus.patching.lower` turns a plan and its .tflite into a stage
program (:mod:`~tfmot_edgeplus.core.program`, the words the C executor and the
``EDGEPLUS_PATCH_STAGE`` op run), :mod:`~tfmot_edgeplus.patching.simulate` runs it in NumPy;
:mod:`~tfmot_edgeplus.patching.deploy` rewrites the model,
:mod:`~tfmot_edgeplus.patching.patch_runner` runs it.

Kernels: the NumPy reference of the tflm_ops conv kernels (bit-exact with the C), on whole
tensors and on patch windows.

Deviations from the paper (QuantMCU, ALGORITHMS.md 4; no public code):

* VDPC is decided once, on calibration data, and fixed in the deployed plan: ``phi`` is a
  quantile of each map's ``|v|`` and a patch is an outlier patch when it exceeds it in more
  than ``outlier_sample_fraction`` of the calibration samples (:mod:`~tfmot_edgeplus.patching.vdq`),
  not a test on each input at run time.
* VDQS's entropy change is measured on the normal patches' values quantized on their own
  least-MSE range, Omega and Phi are normalised by their maxima over all maps, and the maps
  are taken greedily in decreasing best score (one pass: the scores do not interact under
  either cost model); the split tensor stays 8-bit.
* Phi may count our kernels' modeled M4 instructions instead of BitOPs (``saving=
  "instructions"``, the QuantMCU recipe's default): the patch stage runs 8-bit weights, and
  no 4- or 2-bit activation kernel at 8-bit weights is measured faster, so VDQS then keeps
  every map at 8 bits. ``saving="bitops"`` (the paper's, ``plan``'s default) saves BitOPs
  and memory, not time, on the M4.
* The grid search bounds the halo recomputation (``max_halo``, default 1.5x the stage's
  layer-by-layer instructions), where the paper takes the lowest peak.
* Peak SRAM counts activations only (weights in flash; no kernel scratch, no in-place
  tricks), as MCUNetV2 counts.
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
