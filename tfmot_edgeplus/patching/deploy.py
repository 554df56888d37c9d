"""Rewrite an int8 .tflite model around its planned patch stage.

::

    lowered = patching.lower(tflite_bytes, plan)
    deployed = deploy.deploy_model(tflite_bytes, lowered)   # one custom op + the rest
    rest = deploy.rest_model(tflite_bytes, lowered)         # the ops after the split

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
from tfmot_edgeplus.core.program import StageProgram
from tfmot_edgeplus.core.tflite import TFLiteGraph, custom_opcode, cut, finish_model
from tfmot_edgeplus.patching.lower import Lowered

__all__ = ["deploy_model", "patch_stage_options", "rest_model"]


def patch_stage_options(program) -> bytes:
    """The ``EDGEPLUS_PATCH_STAGE`` custom options of a
    :class:`~tfmot_edgeplus.core.program.StageProgram` (or its int32 words): the
    flexbuffer map ``{"version": 1, "program": <blob of little-endian int32 words>}``."""
    words = program.to_words() if isinstance(program, StageProgram) else np.asarray(program)
    return op_schema.PATCH_STAGE.encode(
        {"version": 1, "program": np.asarray(words, dtype="<i4").tobytes()}
    )


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
    cut(g.subgraph, inputs=[lowered.split_tensor])
    if not g.subgraph.operators:
        raise ValueError("the split tensor is the model output: there is no rest to run")
    return finish_model(g)
