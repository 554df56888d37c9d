/* The C kernels' own optimisation level in an Arduino build.
 *
 * The mbed core compiles every library at -Os (variants/ARDUINO_NANO33BLE/cflags.txt), and a
 * library cannot pass its own flags. Measured on the emulated Cortex-M4 (benchmarks/_qcore_m4.py,
 * README), -Os costs the QCore calibration over 1.3x the instructions of -Ofast, so every
 * kernel file of this library starts by including this header (`edgeplus export
 * arduino-library` puts the #include in front of each copied tflm_ops/src file) and its
 * functions are compiled at -O3 when the build is for size. Other builds are left alone. */
#ifndef EDGEPLUS_KERNEL_OPTIMIZE_H_
#define EDGEPLUS_KERNEL_OPTIMIZE_H_

#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE_SIZE__)
#pragma GCC optimize("O3")
#endif

#endif  // EDGEPLUS_KERNEL_OPTIMIZE_H_
