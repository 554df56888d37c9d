/*
 * Strict reading of an edgeplus custom op's flexbuffer options, shared by the ops' glue:
 * the map must verify, every key must be one of the op's schema (edgeplus_op_schema.h), and
 * each key is read with its type and bounds. Every problem is a MicroPrintf naming the op,
 * the key and the value; the functions return false then.
 */
#ifndef EDGEPLUS_OPTIONS_H_
#define EDGEPLUS_OPTIONS_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

// Chirale_TensorFLowLite ships flatbuffers under its src/third_party/flatbuffers/include and
// includes it by that path (an Arduino build puts only each library's src/ on the include
// path); other TFLM builds put flatbuffers' include/ on the path.
#if defined(__has_include)
#if __has_include("third_party/flatbuffers/include/flatbuffers/flexbuffers.h")
#include "third_party/flatbuffers/include/flatbuffers/flexbuffers.h"
#else
#include "flatbuffers/flexbuffers.h"
#endif
#else
#include "flatbuffers/flexbuffers.h"
#endif
#include "tensorflow/lite/micro/micro_log.h"

namespace tflite {
namespace edgeplus {

// Verifies `buffer` as a flexbuffer map (false if it is not one) and sets *map to it;
// *keys_ok tells whether every key satisfies is_known (each unknown key is printed).
inline bool OpenOptionsMap(const char* op, const char* buffer, size_t length, int num_options,
                           bool (*is_known)(const char*), flexbuffers::Map* map,
                           bool* keys_ok) {
  if (buffer == nullptr || length == 0) {
    MicroPrintf("%s: custom options are missing; expected a flexbuffer map with %d keys "
                "(see edgeplus_op_schema.h).",
                op, num_options);
    return false;
  }
  const uint8_t* data = reinterpret_cast<const uint8_t*>(buffer);
  // Verify before reading: a truncated or corrupt buffer must not be read out of bounds.
  // No reuse tracker, hence no allocation.
  if (!flexbuffers::VerifyBuffer(data, length, nullptr)) {
    MicroPrintf("%s: custom options (%d bytes) are not a valid flexbuffer.", op,
                static_cast<int>(length));
    return false;
  }
  flexbuffers::Reference root = flexbuffers::GetRoot(data, length);
  if (!root.IsMap()) {
    MicroPrintf("%s: custom options must be a flexbuffer map (flexbuffer type %d given).", op,
                static_cast<int>(root.GetType()));
    return false;
  }
  *map = root.AsMap();
  flexbuffers::TypedVector keys = map->Keys();
  // flexbuffers' verifier (VerifyKey, up to v25.9.23 at least) accepts a key whose NUL
  // terminator is missing from the buffer; comparing or printing it would read past the
  // options (found by tflm_ops/fuzz/fuzz_options.cc).
  for (size_t i = 0; i < keys.size(); ++i) {
    const uint8_t* key = reinterpret_cast<const uint8_t*>(keys[i].AsKey());
    if (key < data || key >= data + length ||
        memchr(key, 0, static_cast<size_t>(data + length - key)) == nullptr) {
      MicroPrintf("%s: custom options (%d bytes) are not a valid flexbuffer: key %d has no "
                  "terminator.",
                  op, static_cast<int>(length), static_cast<int>(i));
      return false;
    }
  }
  *keys_ok = true;
  for (size_t i = 0; i < keys.size(); ++i) {
    const char* key = keys[i].AsKey();
    if (!is_known(key)) {
      MicroPrintf("%s: unknown custom option '%s' (model written by another version of "
                  "tfmot_edgeplus?).",
                  op, key);
      *keys_ok = false;
    }
  }
  return true;
}

inline bool ReadIntOption(const char* op, const flexbuffers::Map& map, const char* key,
                          int64_t lo, int64_t hi, int32_t* out) {
  flexbuffers::Reference ref = map[key];
  if (ref.IsNull()) {
    MicroPrintf("%s: custom option '%s' is missing.", op, key);
    return false;
  }
  if (!ref.IsInt() && !ref.IsUInt()) {
    MicroPrintf("%s: custom option '%s' must be an int (flexbuffer type %d given).", op, key,
                static_cast<int>(ref.GetType()));
    return false;
  }
  if (ref.IsUInt() && ref.AsUInt64() > static_cast<uint64_t>(INT64_MAX)) {
    MicroPrintf("%s: custom option '%s' is out of range.", op, key);
    return false;
  }
  const int64_t v = ref.IsInt() ? ref.AsInt64() : static_cast<int64_t>(ref.AsUInt64());
  if (v < lo || v > hi) {
    MicroPrintf("%s: custom option '%s' = %ld is outside [%ld, %ld].", op, key,
                static_cast<long>(v), static_cast<long>(lo), static_cast<long>(hi));
    return false;
  }
  *out = static_cast<int32_t>(v);
  return true;
}

inline bool ReadBoolOption(const char* op, const flexbuffers::Map& map, const char* key,
                           uint8_t* out) {
  flexbuffers::Reference ref = map[key];
  if (ref.IsNull()) {
    MicroPrintf("%s: custom option '%s' is missing.", op, key);
    return false;
  }
  if (!ref.IsBool()) {
    MicroPrintf("%s: custom option '%s' must be a bool (flexbuffer type %d given).", op, key,
                static_cast<int>(ref.GetType()));
    return false;
  }
  *out = ref.AsBool() ? 1 : 0;
  return true;
}

// A blob of lo..hi bytes; *out points into the options buffer (copy it to keep it).
inline bool ReadBlobOption(const char* op, const flexbuffers::Map& map, const char* key,
                           int64_t lo, int64_t hi, const uint8_t** out, int32_t* bytes) {
  flexbuffers::Reference ref = map[key];
  if (ref.IsNull()) {
    MicroPrintf("%s: custom option '%s' is missing.", op, key);
    return false;
  }
  if (!ref.IsBlob()) {
    MicroPrintf("%s: custom option '%s' must be a blob (flexbuffer type %d given).", op, key,
                static_cast<int>(ref.GetType()));
    return false;
  }
  flexbuffers::Blob blob = ref.AsBlob();
  const int64_t n = static_cast<int64_t>(blob.size());
  if (n < lo || n > hi) {
    MicroPrintf("%s: custom option '%s' holds %ld bytes, outside [%ld, %ld].", op, key,
                static_cast<long>(n), static_cast<long>(lo), static_cast<long>(hi));
    return false;
  }
  *out = blob.data();
  *bytes = static_cast<int32_t>(n);
  return true;
}

}  // namespace edgeplus
}  // namespace tflite

// X-macro readers of one key of an op's <OP>_OPTIONS(X) list into the struct *opt, and-ing the
// result into ok.
#define EDGEPLUS_READ_OPTION_INT(op, map, opt, ok, field, name, lo, hi) \
  ok = ::tflite::edgeplus::ReadIntOption(op, map, name, lo, hi, &(opt)->field) && ok;
#define EDGEPLUS_READ_OPTION_BOOL(op, map, opt, ok, field, name, lo, hi) \
  ok = ::tflite::edgeplus::ReadBoolOption(op, map, name, &(opt)->field) && ok;
#define EDGEPLUS_READ_OPTION_BLOB(op, map, opt, ok, field, name, lo, hi)                      \
  ok = ::tflite::edgeplus::ReadBlobOption(op, map, name, lo, hi, &(opt)->field,               \
                                          &(opt)->field##_bytes) &&                           \
       ok;

// Defines, in the including (anonymous) namespace, the strict options parser of one op:
//   bool IsKnownKey(const char* key);                       // a key of OPTIONS_MACRO
//   bool ParseOptions(const char* buffer, size_t length, OPTIONS_TYPE* opt);
// ParseOptions checks the map and reads every key with its type and bounds; it prints what is
// wrong (naming `op`) and returns false on any problem.
#define EDGEPLUS_DEFINE_OPTIONS_PARSER(OPTIONS_MACRO, NUM_OPTIONS, OPTIONS_TYPE, op)             \
  bool IsKnownKey(const char* key) {                                                          \
    OPTIONS_MACRO(EDGEPLUS_KEY_MATCHES_)                                                      \
    return false;                                                                             \
  }                                                                                           \
  bool ParseOptions(const char* buffer, size_t length, OPTIONS_TYPE* opt) {                   \
    const char* const op_name = (op);                                                         \
    flexbuffers::Map map = flexbuffers::Map::EmptyMap();                                      \
    bool ok = true;                                                                           \
    if (!::tflite::edgeplus::OpenOptionsMap(op_name, buffer, length, NUM_OPTIONS, IsKnownKey,  \
                                            &map, &ok)) {                                     \
      return false;                                                                           \
    }                                                                                         \
    OPTIONS_MACRO(EDGEPLUS_READ_OPTION_)                                                      \
    return ok;                                                                                \
  }
#define EDGEPLUS_KEY_MATCHES_(field, name, kind, lo, hi) \
  if (strcmp(key, name) == 0) return true;
#define EDGEPLUS_READ_OPTION_(field, name, kind, lo, hi) \
  EDGEPLUS_READ_OPTION_##kind(op_name, map, opt, ok, field, name, lo, hi)

#endif  // EDGEPLUS_OPTIONS_H_
