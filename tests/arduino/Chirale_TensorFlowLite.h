/* A stand-in for the Chirale_TensorFlowLite library's umbrella header. The tests put the
 * TFLM sources of EDGEPLUS_TFLM_ROOT (and flatbuffers, gemmlowp) on the include path, as the
 * library's src/ folder is on the Arduino IDE's. */
#ifndef EDGEPLUS_TEST_CHIRALE_TENSORFLOWLITE_H_
#define EDGEPLUS_TEST_CHIRALE_TENSORFLOWLITE_H_
#endif
