"""Rewrite an int8 .tflite model around its planned patch stage.

::

    lowered = patching.lower(tflite_bytes, plan)
    deployed = patch_stage.deploy_model(tflite_bytes, lowered)   # one custom op + the rest
    rest = patch_stage.rest_model(tflite_bytes, lowered)         # the ops after the split

:func:`deploy_model` replaces the stage's operators by ONE ``EDGEPLUS_PATCH_STAGE`` operator
(inputs: the stage input, then the filter of each weight slot, the model's own weight
tensors, unchanged and so stored at their planned bits; biases and requantization per
variant are in the program; output: the split tensor; custom
options: the stage program as a flexbuffer, see ``op_schema.PATCH_STAGE``). Everything else
runs as the builtins it was. :func:`rest_model` keeps only what runs after the split, with
the split tensor as the model input: the TFLM half of the split runner
(:class:`~tfmot_edgeplus.patching.patch_runner.PatchStageRunner`). Both drop the tensors and
buffers no operator uses any more, and re-lay the buffers with the schema's alignment.
"""

from __future__ import annotations

import numpy as np

from tfmot_edgeplus.conversion import op_schema
from tfmot_edgeplus.conversion.custom_ops import patch_stage_options
from tfmot_edgeplus.core.tflite import TFLiteGraph, custom_opcode, finish_model
from tfmot_edgeplus.patching.lower import Lowered

__all__ = ["deploy_model", "rest_model"]


def deploy_model(model_bytes, lowered: Lowered) -> bytes:
    """The model with its patch stage as one ``EDGEPLUS_PATCH_STAGE`` operator."""
    g = TFLiteGraph(model_bytes)
    schema = g.schema
    sg = g.subgraph
    op = schema.OperatorT()
    op.opcodeIndex = custom_opcode(g, op_schema.PATCH_STAGE.custom_code)
    op.inputs = [lowered.input_tensor, *lowered.filter_tensors]
    op.outputs = [lowered.split_tensor]
    op.customOptions = np.frombuffer(patch_stage_options(lowered.program), dtype=np.uint8)
    op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
    drop = set(lowered.op_indices)
    first = min(drop)
    ops = [o for k, o in enumerate(sg.operators) if k not in drop]
    position = sum(1 for k in range(first) if k not in drop)
    ops.insert(position, op)
    sg.operators = ops
    return finish_model(g)


def rest_model(model_bytes, lowered: Lowered) -> bytes:
    """The operators after the split, reading the split tensor as the model input."""
    g = TFLiteGraph(model_bytes)
    sg = g.subgraph
    split = lowered.split_tensor
    needed: set[int] = set()
    frontier = [int(t) for t in sg.outputs]
    producers = {int(t): k for k, op in enumerate(sg.operators) for t in op.outputs}
    seen = set()
    while frontier:
        t = frontier.pop()
        if t in seen or t == split:
            continue
        seen.add(t)
        k = producers.get(t)
        if k is None:
            continue
        needed.add(k)
        frontier += [int(i) for i in sg.operators[k].inputs if i >= 0]
    if not needed:
        raise ValueError("the split tensor is the model output: there is no rest to run")
    sg.operators = [op for k, op in enumerate(sg.operators) if k in needed]
    sg.inputs = [split]
    return finish_model(g)
