/*
 * EdgePlus: low-bit TensorFlow Lite Micro models on the Arduino Nano 33 BLE.
 *
 * The library's only root header. What it gives a sketch:
 *
 *   edgeplus::AddOps(resolver)         register EDGEPLUS_CONV_MP and EDGEPLUS_PATCH_STAGE
 *                                      (the custom ops of tfmot_edgeplus models) into a
 *                                      tflite::MicroMutableOpResolver;
 *   edgeplus::PatchStage               run a QuantMCU patch stage program directly, without
 *                                      the interpreter;
 *   edgeplus::QCoreCalibrator          the classifier head of a deployed model in RAM: predict,
 *                                      collect labeled samples, one QCore bit-flip calibration
 *                                      step (no back-propagation) on QCore + new samples;
 *   edgeplus::Stopwatch                micros() timings;
 *   the C kernels                      edgeplus/edgeplus_ops.h.
 *
 * Models, plans and QCores come from `edgeplus export arduino` (tfmot_edgeplus), which writes
 * them as aligned C arrays into a sketch folder.
 *
 * TensorFlow Lite Micro comes from the Chirale_TensorFLowLite library (2.0.0; so its
 * library.properties spells it, its header is <Chirale_TensorFlowLite.h>): include that header
 * before this one. The glue also builds against TFLM of 2023 and later (edgeplus/tflm/
 * edgeplus_tflm.h tells the two APIs apart). A sketch that uses only PatchStage,
 * QCoreCalibrator and the kernels may define EDGEPLUS_NO_TFLM before including it.
 *
 * This header and those it includes never include TFLM's micro_utils.h: after Arduino.h (a
 * sketch's first include) the core's abs() macro breaks it.
 */
#ifndef EDGEPLUS_H_
#define EDGEPLUS_H_

#include "edgeplus/edgeplus_ops.h"
#include "edgeplus/PatchStage.h"
#include "edgeplus/QCoreCalibrator.h"
#include "edgeplus/Stopwatch.h"

#if !defined(EDGEPLUS_NO_TFLM)
#if defined(__has_include)
#if !__has_include("tensorflow/lite/micro/micro_mutable_op_resolver.h")
#error "EdgePlus needs TensorFlow Lite Micro: install the Chirale_TensorFLowLite library 2.0.0 (Library Manager, or `arduino-cli lib install Chirale_TensorFLowLite@2.0.0`) and #include <Chirale_TensorFlowLite.h> before <EdgePlus.h>. Sketches without the interpreter may #define EDGEPLUS_NO_TFLM first."
#endif
#endif
#include "edgeplus/Ops.h"
#endif

#endif  // EDGEPLUS_H_
