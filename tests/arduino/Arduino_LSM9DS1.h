/* A stand-in for the Arduino_LSM9DS1 library's header (the Nano 33 BLE's IMU), declaring the
 * calls the MotionContinualCalibration example makes, so that it compiles in the tests. */
#ifndef EDGEPLUS_TEST_ARDUINO_LSM9DS1_H_
#define EDGEPLUS_TEST_ARDUINO_LSM9DS1_H_

class LSM9DS1Class {
 public:
  int begin();
  void end();
  int readAcceleration(float& x, float& y, float& z);  // g
  int accelerationAvailable();
  float accelerationSampleRate();
  int readGyroscope(float& x, float& y, float& z);  // degrees per second
  int gyroscopeAvailable();
  float gyroscopeSampleRate();
};

extern LSM9DS1Class IMU;

#endif  // EDGEPLUS_TEST_ARDUINO_LSM9DS1_H_
