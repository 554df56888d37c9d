"""The shared ground every other subpackage stands on; it imports none of them.

- :mod:`~tfmot_edgeplus.core.intmath`: bit-width ranges, TFLite's fixed-point requantization,
  QUANTIZE/DEQUANTIZE;
- :mod:`~tfmot_edgeplus.core.packing`: the 8/4/2-bit packed layout shared with ``tflm_ops``;
- :mod:`~tfmot_edgeplus.core.conv_reference`: the NumPy reference of the ``tflm_ops`` conv
  kernels, bit-exact with the C;
- :mod:`~tfmot_edgeplus.core.program`: the patch-stage program, the words the C executor runs;
- :mod:`~tfmot_edgeplus.core.tflite`: the one reader and editor of .tflite flatbuffers.

Nothing here imports TensorFlow or Keras.
"""
