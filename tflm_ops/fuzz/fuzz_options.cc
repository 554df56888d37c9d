/*
 * Fuzz target: the custom ops' strict options parser (tflm_ops/tflm/edgeplus_options.h,
 * flexbuffer verification included), as both ops' glue defines it (edgeplus_conv_mp.cc,
 * edgeplus_patch_stage_op.cc), compiled against the flatbuffers headers
 * (EDGEPLUS_FLATBUFFERS_ROOT) with a MicroPrintf shim (shim/) instead of TFLM.
 *
 * Every input is parsed by both parsers (from an exact-size copy: ASan sees any read past
 * the options). Whatever it gives back, every message is formatted in full; when a parser
 * accepts, every int lies in its schema bounds, every bool is 0 or 1, and the program blob
 * lies inside the options with a length in bounds; the stage program it holds then goes
 * through edgeplus_patch_stage_check and _get_buffer_size, as the op's Prepare does.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeplus/edgeplus_ops.h"
#include "edgeplus_op_schema.h"
#include "edgeplus_options.h"
#include "fuzz_common.h"

void MicroPrintf(const char* format, ...) {
  char line[512];
  va_list args;
  va_start(args, format);
  vsnprintf(line, sizeof(line), format, args);
  va_end(args);
}

namespace conv_mp {
EDGEPLUS_DEFINE_OPTIONS_PARSER(EDGEPLUS_CONV_MP_OPTIONS, EDGEPLUS_CONV_MP_NUM_OPTIONS,
                               edgeplus_conv_mp_options, EDGEPLUS_CONV_MP_CUSTOM_CODE)
}  // namespace conv_mp

namespace patch_stage {
EDGEPLUS_DEFINE_OPTIONS_PARSER(EDGEPLUS_PATCH_STAGE_OPTIONS, EDGEPLUS_PATCH_STAGE_NUM_OPTIONS,
                               edgeplus_patch_stage_options, EDGEPLUS_PATCH_STAGE_CUSTOM_CODE)
}  // namespace patch_stage

// Each accepted field within its schema bounds.
#define EP_CHECK_FIELD_INT(opt, field, name, lo, hi) \
  FUZZ_CHECK((opt).field >= (lo) && (opt).field <= (hi), "%s = %d accepted", name, \
             (int)(opt).field);
#define EP_CHECK_FIELD_BOOL(opt, field, name, lo, hi) \
  FUZZ_CHECK((opt).field <= 1, "%s = %d accepted", name, (int)(opt).field);
#define EP_CHECK_FIELD_BLOB(opt, field, name, lo, hi)                                      \
  FUZZ_CHECK((opt).field##_bytes >= (lo) && (opt).field##_bytes <= (hi) &&                 \
                 (opt).field >= buf && (opt).field + (opt).field##_bytes <= buf + size, \
             "%s: %d bytes at offset %ld accepted", name, (int)(opt).field##_bytes,       \
             (long)((opt).field - buf));
#define EP_CHECK_FIELD(field, name, kind, lo, hi) EP_CHECK_FIELD_##kind(opt, field, name, lo, hi)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint8_t* buf = static_cast<uint8_t*>(ep_xmalloc(size));
  memcpy(buf, data, size);
  const char* text = reinterpret_cast<const char*>(buf);
  {
    edgeplus_conv_mp_options opt;
    memset(&opt, 0x5A, sizeof(opt));
    if (conv_mp::ParseOptions(text, size, &opt)) {
      EDGEPLUS_CONV_MP_OPTIONS(EP_CHECK_FIELD)
    }
  }
  {
    edgeplus_patch_stage_options opt;
    memset(&opt, 0x5A, sizeof(opt));
    if (patch_stage::ParseOptions(text, size, &opt)) {
      EDGEPLUS_PATCH_STAGE_OPTIONS(EP_CHECK_FIELD)
      // the op's Init copies the words into aligned memory; Prepare checks them
      const int32_t words = opt.program_bytes / 4;
      int32_t* program = static_cast<int32_t*>(ep_xmalloc(static_cast<size_t>(words) * 4));
      memcpy(program, opt.program, static_cast<size_t>(words) * 4);
      const edgeplus_status rc = edgeplus_patch_stage_check(program, words);
      const int32_t need = edgeplus_patch_stage_get_buffer_size(program, words);
      FUZZ_CHECK(rc == EDGEPLUS_OK ? need >= 0 || need == EDGEPLUS_ERR_DIMS : need == rc,
                 "check %s but _get_buffer_size %d", edgeplus_status_str(rc), (int)need);
      free(program);
    }
  }
  free(buf);
  return 0;
}
