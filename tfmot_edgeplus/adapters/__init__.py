"""CoRa: low-rank residual adapters that reclaim the quantization residual (ALGORITHMS.md 3).

    qat = tfmot_edgeplus.quantize_model(fp_model, EdgePlusQuantizeScheme(weight_bits=2))
    model = adapters.add_residual_adapters(qat, fp_model, budget=0.05)   # new model
    adapters.calibrate(model, x_calib, steps=250)                        # KD, adapters only
    tflite_bytes = tfmot_edgeplus.convert(model, x_calib)   # main convs INT4/LUT, adapters int8

Modules: :mod:`~tfmot_edgeplus.adapters.svd` (the SVD initialisation and the rank
allocation, NumPy only), :mod:`~tfmot_edgeplus.adapters.insert` (the graph surgery and its
design choices), :mod:`~tfmot_edgeplus.adapters.rank_search` (the paper's differentiable
Butterworth rank search), :mod:`~tfmot_edgeplus.adapters.calibrate` (the short KD
calibration).

Deviations from the paper (CoRa, ALGORITHMS.md 3):

* The residual is that of our quantizer (symmetric, per output channel, LSQ steps at their
  minimum-MSE value), not of the paper's per-tensor asymmetric one clipped at mean +- k std.
* Ranks by default come from :func:`allocate_ranks` (greedy on each layer's share of residual
  energy per parameter, no data); the paper's learned Butterworth cutoffs are
  :func:`search_ranks`, whose task loss is our KD loss. ``budget`` counts parameters.
* Depthwise and grouped convolutions get no adapter; after a conv followed by BatchNorm the
  Add goes after the BN with the residual scaled by it (:mod:`~tfmot_edgeplus.adapters.insert`).
* :func:`calibrate` trains the adapters only with KD from the float model; the weights it
  keeps are the best by held-out top-1 when given labelled held-out samples, else it rolls
  back if the KD loss rose: both rules are ours.
* ``calibrate(train_bn=True)`` (off by default) also trains every BatchNorm's gamma and beta,
  and ``train_scales=True`` the main layers' LSQ steps; the paper trains the adapters only.
"""

from tfmot_edgeplus.adapters.calibrate import calibrate
from tfmot_edgeplus.adapters.insert import (
    ADAPTED_TYPES,
    AdapterRecord,
    adapter_record,
    add_residual_adapters,
    check_budget,
)
from tfmot_edgeplus.adapters.rank_search import ButterworthGate, RankSearch, search_ranks
from tfmot_edgeplus.adapters.svd import (
    ResidualSVD,
    adapter_params,
    allocate_ranks,
    max_rank,
    residual_svd,
    useful_rank,
)

__all__ = [
    "ADAPTED_TYPES",
    "AdapterRecord",
    "ButterworthGate",
    "RankSearch",
    # the math
    "ResidualSVD",
    "adapter_params",
    "adapter_record",
    # build and train
    "add_residual_adapters",
    "allocate_ranks",
    "calibrate",
    "check_budget",
    "max_rank",
    "residual_svd",
    "search_ranks",
    "useful_rank",
]
