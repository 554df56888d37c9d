/*
 * fuzz_common.h - helpers shared by the libFuzzer targets of tflm_ops/fuzz (host only).
 *
 * ep_reader decodes a fuzz input into arguments: ep_rd_int gives mostly small values
 * (one byte, -127..127) and, after the escape byte 0x80, any int32 (four bytes), so the
 * fuzzer reaches both valid geometries and the int32 edges. Past the end it reads 0.
 * FUZZ_CHECK aborts with a message: libFuzzer reports it as a crash and keeps the input.
 */
#ifndef EDGEPLUS_FUZZ_COMMON_H
#define EDGEPLUS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeplus/edgeplus_ops.h"

#define FUZZ_CHECK(cond, ...)                                                   \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__,      \
                    __LINE__, #cond);                                           \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                              \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* Every refusal names what it refused (edgeplus_last_error): a negative status (or size)
 * `rc` must come with a record of that status and an argument. Clears the record. */
#define FUZZ_RECORDED(rc)                                                                  \
    do {                                                                                   \
        const edgeplus_error *fuzz_e = edgeplus_last_error();                              \
        if ((rc) < 0) {                                                                    \
            FUZZ_CHECK(fuzz_e->status == (edgeplus_status)(rc) && fuzz_e->argument != NULL, \
                       "refused with %s but recorded %s", edgeplus_status_str((rc)),       \
                       edgeplus_status_str(fuzz_e->status));                              \
        }                                                                                  \
        edgeplus_clear_error();                                                            \
    } while (0)

/* Caps on the work one input may ask for: larger requests are still checked (the check
 * functions run on every input) but not executed. */
#define FUZZ_MAX_BYTES (1 << 16) /* any one buffer (the scratch: 4 times that) */
#define FUZZ_MAX_WORK (1 << 16)  /* multiply-accumulates (or element operations) */

/* The two canaries of the "every output element written" runs: they differ in every
 * 2-, 4- and 8-bit field. */
#define FUZZ_CANARY_A 0x5A
#define FUZZ_CANARY_B 0xA5

typedef struct {
    const uint8_t *data;
    size_t size, pos;
} ep_reader;

static inline uint8_t ep_rd_u8(ep_reader *r)
{
    return r->pos < r->size ? r->data[r->pos++] : 0;
}

static inline int32_t ep_rd_int(ep_reader *r)
{
    const uint8_t b = ep_rd_u8(r);
    if (b == 0x80) {
        uint32_t v = 0;
        int i;
        for (i = 0; i < 4; ++i) {
            v |= (uint32_t)ep_rd_u8(r) << (8 * i);
        }
        return (int32_t)v;
    }
    return (int8_t)b;
}

/* a * b for a, b >= 0, saturated at 2^62 (sizes of arbitrary dims without overflow). */
static inline int64_t ep_mul(int64_t a, int64_t b)
{
    const int64_t cap = (int64_t)1 << 62;
    return a != 0 && b > cap / a ? cap : a * b;
}

/* Deterministic filler (xorshift32 from a seed taken from the input). */
static inline void ep_fill(void *buf, size_t n, uint32_t seed)
{
    uint8_t *p = (uint8_t *)buf;
    uint32_t s = seed | 1u;
    size_t i;
    for (i = 0; i < n; ++i) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        p[i] = (uint8_t)(s >> 11);
    }
}

/* malloc of exactly n bytes (n may be 0: ASan then flags any access to the block). */
static inline void *ep_xmalloc(size_t n)
{
    void *p = malloc(n);
    FUZZ_CHECK(p != NULL, "malloc(%zu)", n);
    return p;
}

/* A scratch block of exactly `size` bytes starting `misalign` (0..3) bytes past a malloc'd
 * address: any access past buf + size is an ASan report. */
typedef struct {
    uint8_t *block;
    edgeplus_context ctx;
} ep_scratch;

static inline void ep_scratch_alloc(ep_scratch *s, int32_t size, int misalign)
{
    s->block = (uint8_t *)ep_xmalloc((size_t)size + (size_t)misalign);
    s->ctx.buf = s->block + misalign;
    s->ctx.size = size;
    memset(s->ctx.buf, 0xC3, (size_t)size); /* stale contents */
}

static inline void ep_scratch_free(ep_scratch *s) { free(s->block); }

/* Element idx (bits 2/4/8, flat packed index) of buf, as the raw field value. */
static inline int32_t ep_field(const int8_t *buf, int64_t idx, int32_t bits)
{
    const uint8_t b = (uint8_t)buf[(idx * bits) >> 3];
    return (int32_t)((b >> ((idx * bits) & 7)) & ((1u << bits) - 1u));
}

#endif /* EDGEPLUS_FUZZ_COMMON_H */
