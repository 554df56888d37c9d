/* edgeplus_last_error: what the last refused call of this thread refused (edgeplus_ops.h). */
#include "edgeplus_support.h"

/* Hosted builds (the ctypes binding calls from several Python threads, the GIL released)
 * keep one record per thread; bare metal a plain static. */
#if defined(__linux__) || defined(__APPLE__) || defined(_WIN32)
#if defined(_MSC_VER)
#define EP_THREAD_LOCAL __declspec(thread)
#else
#define EP_THREAD_LOCAL __thread
#endif
#else
#define EP_THREAD_LOCAL
#endif

static EP_THREAD_LOCAL edgeplus_error ep_last_error;

const edgeplus_error *edgeplus_last_error(void) { return &ep_last_error; }

void edgeplus_clear_error(void)
{
    ep_last_error.status = EDGEPLUS_OK;
    ep_last_error.argument = "";
    ep_last_error.index = -1;
    ep_last_error.value = 0;
    ep_last_error.min = 1;
    ep_last_error.max = 0;
    ep_last_error.expected = "";
}

edgeplus_status edgeplus__fail(edgeplus_status status, const char *argument, int32_t index,
                               int64_t value, int64_t min, int64_t max, const char *expected)
{
    ep_last_error.status = status;
    ep_last_error.argument = argument;
    ep_last_error.index = index;
    ep_last_error.value = value;
    ep_last_error.min = min;
    ep_last_error.max = max;
    ep_last_error.expected = expected;
    return status;
}
