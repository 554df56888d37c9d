/*
 * test_patch_stage.c - C tests of the patch-stage executor (edgeplus_patch_stage*), on the
 * host (also under ASan/UBSan: make test-asan) and on the Cortex-M4 in QEMU. Called from
 * edgeplus_run_tests (test_edgeplus.c); static buffers only.
 *
 * - the golden program of golden_cases.h (tests/builders/golden.py, from the
 *   NumPy simulator) byte for byte at exactly the scratch it asks for; weight sizes; 9 and
 *   1 bytes less scratch and every NULL argument refused with the output untouched;
 * - every truncation of the program refused (with and without its word count fixed);
 * - corrupted programs (1 or 2 words set to nearby, extreme or random values): the check
 *   returns a known status and never reads outside the words; whatever it accepts runs
 *   with status OK at exactly its scratch size, writes every output element and gives the
 *   same output with the whole scratch pool (and other garbage in it); malformed programs
 *   (overflowing dims, overlapping buffers, patches not tiling the output) refused with
 *   their status. Programs, scratch, filters, input and
 *   output sit at the END of their static pools, so an overread hits ASan's redzone.
 */
#include <stdio.h>
#include <string.h>

#include "edgeplus/edgeplus_ops.h"
#include "golden_cases.h"

int edgeplus_run_stage_tests(int *checks);

static int s_checks;
static int s_failures;

#define CHECK(cond, ...)                                        \
    do {                                                        \
        s_checks++;                                             \
        if (!(cond)) {                                          \
            s_failures++;                                       \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);         \
            printf(__VA_ARGS__);                                \
            printf("\n");                                       \
        }                                                       \
    } while (0)

#define ST_PROGRAM_WORDS 512
#define ST_SCRATCH 8192
#define ST_SLOTS 6
#define ST_FILTER 384
#define ST_IO 1024
#define ST_PREFILL 0x5A
#define ST_MUTANTS 1500

static int32_t s_program[ST_PROGRAM_WORDS];
static int8_t s_scratch[ST_SCRATCH];
static int8_t s_filters[ST_SLOTS][ST_FILTER];
static int8_t s_input[ST_IO];
static int8_t s_output[ST_IO];
static int8_t s_expect[ST_IO];
static uint32_t s_rng = 0x9E3779B9u;

static uint32_t xorshift(void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 17;
    s_rng ^= s_rng << 5;
    return s_rng;
}

/* The first `words` words of the golden program at the end of s_program. */
static int32_t *place_program(int32_t words)
{
    int32_t *dst = s_program + ST_PROGRAM_WORDS - words;
    memcpy(dst, golden_stage.program, (size_t)words * sizeof(int32_t));
    return dst;
}

static int untouched(const int8_t *out, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; i++) {
        if ((uint8_t)out[i] != ST_PREFILL) {
            return 0;
        }
    }
    return 1;
}

static int known_status(edgeplus_status st)
{
    return st == EDGEPLUS_OK || st == EDGEPLUS_ERR_NULL || st == EDGEPLUS_ERR_DIMS ||
           st == EDGEPLUS_ERR_BITS || st == EDGEPLUS_ERR_WINDOW || st == EDGEPLUS_ERR_ARG ||
           st == EDGEPLUS_ERR_COVERAGE || st == EDGEPLUS_ERR_OVERLAP;
}

static void test_stage_golden(void)
{
    const golden_stage_case *g = &golden_stage;
    const int32_t *prog = place_program(g->words);
    const int32_t need = edgeplus_patch_stage_get_buffer_size(prog, g->words);
    int8_t *out = s_output + ST_IO - g->output_bytes;
    const int8_t *no_filter[ST_SLOTS] = {0};
    edgeplus_context ctx;
    int32_t slot, bytes, i;
    edgeplus_status st;

    CHECK(edgeplus_patch_stage_check(prog, g->words) == EDGEPLUS_OK, "golden program refused");
    CHECK(need > 0 && need <= ST_SCRATCH, "golden scratch %ld", (long)need);
    if (need <= 0 || need > ST_SCRATCH || g->output_bytes > ST_IO) {
        return;
    }
    for (slot = 0; slot < g->num_slots; slot++) {
        st = edgeplus_patch_stage_weight_size(prog, g->words, slot, &bytes);
        CHECK(st == EDGEPLUS_OK && bytes == g->filter_bytes[slot], "slot %ld: %ld bytes, %s",
              (long)slot, (long)bytes, edgeplus_status_str(st));
    }
    CHECK(edgeplus_patch_stage_weight_size(prog, g->words, g->num_slots, &bytes) ==
              EDGEPLUS_ERR_ARG, "a slot past the last");
    CHECK(edgeplus_patch_stage_weight_size(prog, g->words, 0, NULL) == EDGEPLUS_ERR_NULL,
          "weight_size NULL");

    /* refusals leave the output untouched */
    memset(s_output, ST_PREFILL, sizeof(s_output));
    for (i = 1; i <= 9; i += 8) {
        ctx.buf = s_scratch + ST_SCRATCH - (need - i);
        ctx.size = need - i;
        st = edgeplus_patch_stage(&ctx, prog, g->words, g->filters, g->input, out);
        CHECK(st == EDGEPLUS_ERR_SCRATCH, "scratch need-%ld: %s", (long)i,
              edgeplus_status_str(st));
    }
    ctx.buf = s_scratch + ST_SCRATCH - need;
    ctx.size = need;
    CHECK(edgeplus_patch_stage(NULL, prog, g->words, g->filters, g->input, out) ==
              EDGEPLUS_ERR_NULL, "ctx NULL");
    CHECK(edgeplus_patch_stage(&ctx, NULL, g->words, g->filters, g->input, out) ==
              EDGEPLUS_ERR_NULL, "program NULL");
    CHECK(edgeplus_patch_stage(&ctx, prog, g->words, NULL, g->input, out) == EDGEPLUS_ERR_NULL,
          "filters NULL");
    CHECK(edgeplus_patch_stage(&ctx, prog, g->words, no_filter, g->input, out) ==
              EDGEPLUS_ERR_NULL, "a filter NULL");
    CHECK(edgeplus_patch_stage(&ctx, prog, g->words, g->filters, NULL, out) == EDGEPLUS_ERR_NULL,
          "input NULL");
    CHECK(edgeplus_patch_stage(&ctx, prog, g->words, g->filters, g->input, NULL) ==
              EDGEPLUS_ERR_NULL, "output NULL");
    ctx.buf = NULL;
    CHECK(edgeplus_patch_stage(&ctx, prog, g->words, g->filters, g->input, out) ==
              EDGEPLUS_ERR_SCRATCH, "ctx->buf NULL");
    CHECK(untouched(s_output, ST_IO), "output written by a refused call");

    /* the run, at exactly the scratch it asks for; twice (buffers are reused) */
    for (i = 0; i < 2; i++) {
        ctx.buf = s_scratch + ST_SCRATCH - need;
        ctx.size = need;
        st = edgeplus_patch_stage(&ctx, prog, g->words, g->filters, g->input, out);
        CHECK(st == EDGEPLUS_OK, "golden stage: %s", edgeplus_status_str(st));
        CHECK(memcmp(out, g->expected, (size_t)g->output_bytes) == 0 &&
                  untouched(s_output, ST_IO - g->output_bytes),
              "golden stage output (run %ld)", (long)i);
    }
}

static void test_stage_truncated(void)
{
    const int32_t words = golden_stage.words;
    int32_t cut;
    int bad = 0;
    for (cut = 0; cut < words; cut++) {
        int32_t *p = place_program(cut);
        int32_t bytes;
        bad += edgeplus_patch_stage_check(p, cut) == EDGEPLUS_OK;
        bad += edgeplus_patch_stage_get_buffer_size(p, cut) >= 0;
        bad += edgeplus_patch_stage_weight_size(p, cut, 0, &bytes) == EDGEPLUS_OK;
        if (cut > 6) {
            p[6] = cut; /* the header's word count agrees: tables or quant blocks missing */
            bad += edgeplus_patch_stage_check(p, cut) == EDGEPLUS_OK;
        }
    }
    CHECK(bad == 0, "%d truncated programs accepted", bad);
}

/* Tensor record field of the program at p. */
static int32_t tensor_field(const int32_t *p, int32_t i, int32_t field)
{
    return p[8 + 9 * i + field];
}

/* Word index of tensor i's field f, and of patch q's region of tensor i (field f). */
#define ST_TENSOR(i, f) (8 + 9 * (i) + (f))
#define ST_REGION(T, S, q, i, f) (8 + 9 * (T) + 20 * (S) + (q) * (1 + 4 * (T)) + 1 + 4 * (i) + (f))

/* Malformed golden programs, each refused with its status (the Python twin, with the same
 * cases and program.py's status: tests/test_patch_stage_c.py), and buffers shared by
 * tensors never alive at the same step accepted and run to the golden output. */
static void test_stage_malformed(void)
{
    const golden_stage_case *g = &golden_stage;
    const int32_t T = g->program[2], S = g->program[3], last = T - 1;
    static const int32_t big = 1 << 30;
    struct {
        const char *what;
        int32_t edits; /* (index, value) pairs */
        int32_t at[3], value[3];
        edgeplus_status want;
    } cases[] = {
        /* the program: h * w * c = 2^64 wrapped an int64 product to 0, then 3 * c
         * went negative and the quant check read 2^30 words past the program */
        {"dims 2^30 x 16 x 2^30", 3, {ST_TENSOR(1, 0), ST_TENSOR(1, 1), ST_TENSOR(1, 2)},
         {big, 16, big}, EDGEPLUS_ERR_DIMS},
        {"c = 2^30 (3 c past int32)", 1, {ST_TENSOR(1, 2)}, {big}, EDGEPLUS_ERR_DIMS},
        {"h * w = 2^32 (0 in int32)", 2, {ST_TENSOR(3, 0), ST_TENSOR(3, 1)}, {1 << 16, 1 << 16},
         EDGEPLUS_ERR_DIMS},
        {"h * w * c = 2^28", 3, {ST_TENSOR(last, 0), ST_TENSOR(last, 1), ST_TENSOR(last, 2)},
         {1 << 14, 1 << 14, 1}, EDGEPLUS_ERR_DIMS},
        /* tensor 2 (alive at steps 1-2) 1 byte into tensor 1 (steps 0-1) */
        {"buffers 1 and 2 overlap", 1, {ST_TENSOR(2, 7)}, {439}, EDGEPLUS_ERR_OVERLAP},
        /* tensor 5 (steps 4-5) on tensor 3 (steps 2-4: the add reads it) */
        {"buffers 3 and 5 overlap", 1, {ST_TENSOR(5, 7)}, {924}, EDGEPLUS_ERR_OVERLAP},
        {"patch 0's window 1 row short", 1, {ST_REGION(T, S, 0, last, 2)}, {2},
         EDGEPLUS_ERR_COVERAGE},
        {"patch 3 writes nothing", 2, {ST_REGION(T, S, 3, last, 2), ST_REGION(T, S, 3, last, 3)},
         {0, 0}, EDGEPLUS_ERR_COVERAGE},
        {"a column gap", 2, {ST_REGION(T, S, 1, last, 1), ST_REGION(T, S, 1, last, 3)}, {4, 2},
         EDGEPLUS_ERR_COVERAGE},
        /* tensor 4 (steps 3-4) in tensor 1's bytes (steps 0-1): never alive together */
        {"buffers 1 and 4 share bytes", 1, {ST_TENSOR(4, 7)}, {0}, EDGEPLUS_OK},
    };
    int32_t c, e;
    for (c = 0; c < (int32_t)(sizeof(cases) / sizeof(cases[0])); c++) {
        int32_t *p = place_program(g->words);
        edgeplus_status st;
        for (e = 0; e < cases[c].edits; e++) {
            p[cases[c].at[e]] = cases[c].value[e];
        }
        st = edgeplus_patch_stage_check(p, g->words);
        CHECK(st == cases[c].want, "%s: %s, want %s", cases[c].what, edgeplus_status_str(st),
              edgeplus_status_str(cases[c].want));
        CHECK(edgeplus_patch_stage_get_buffer_size(p, g->words) ==
                  (st == EDGEPLUS_OK ? edgeplus_patch_stage_get_buffer_size(g->program, g->words)
                                     : (int32_t)st),
              "%s: buffer size", cases[c].what);
        if (st == EDGEPLUS_OK) {
            const int32_t need = edgeplus_patch_stage_get_buffer_size(p, g->words);
            int8_t *out = s_output + ST_IO - g->output_bytes;
            edgeplus_context ctx;
            ctx.buf = s_scratch + ST_SCRATCH - need;
            ctx.size = need;
            memset(s_output, ST_PREFILL, sizeof(s_output));
            st = edgeplus_patch_stage(&ctx, p, g->words, g->filters, g->input, out);
            CHECK(st == EDGEPLUS_OK && memcmp(out, g->expected, (size_t)g->output_bytes) == 0,
                  "%s: the run (%s) differs from the golden output", cases[c].what,
                  edgeplus_status_str(st));
        }
    }
}

static void test_stage_corrupted(void)
{
    const golden_stage_case *g = &golden_stage;
    const int32_t words = g->words;
    int32_t m, ran = 0, accepted = 0, unknown = 0, failed = 0;
    for (m = 0; m < ST_MUTANTS; m++) {
        int32_t *p = place_program(words);
        const int8_t *filters[ST_SLOTS];
        int32_t edits = 1 + (int32_t)(xorshift() % 2), e, slot, need, in_bytes, out_bytes;
        int8_t *input, *output;
        edgeplus_context ctx;
        edgeplus_status st;
        int fits = 1;
        for (e = 0; e < edits; e++) {
            const int32_t i = (int32_t)(xorshift() % (uint32_t)words);
            const uint32_t r = xorshift();
            static const int32_t extreme[] = {0, -1, 1, 3, 255, 256, 1 << 30, INT32_MIN,
                                              INT32_MAX};
            switch (r % 4) {
            case 0:
                p[i] = (int32_t)((uint32_t)p[i] + (r >> 8) % 7u - 3u);
                break;
            case 1:
                p[i] = extreme[(r >> 8) % (sizeof(extreme) / sizeof(extreme[0]))];
                break;
            case 2:
                p[i] = (int32_t)(0u - (uint32_t)p[i]);
                break;
            default:
                p[i] = (int32_t)xorshift();
            }
        }
        st = edgeplus_patch_stage_check(p, words);
        unknown += !known_status(st);
        if (st != EDGEPLUS_OK) {
            continue;
        }
        accepted++;
        need = edgeplus_patch_stage_get_buffer_size(p, words);
        if (need < 0) {
            failed += need != EDGEPLUS_ERR_DIMS; /* only a scratch size past int32 */
            continue;
        }
        for (slot = 0; slot < ST_SLOTS; slot++) {
            int32_t bytes = 0;
            filters[slot] = NULL;
            if (edgeplus_patch_stage_weight_size(p, words, slot, &bytes) != EDGEPLUS_OK) {
                continue;
            }
            if (bytes > ST_FILTER) {
                fits = 0;
                continue;
            }
            /* the golden filter's bytes (or zeros) at the end of the slot's pool */
            memset(s_filters[slot], 0, ST_FILTER);
            if (slot < g->num_slots) {
                const int32_t n = bytes < g->filter_bytes[slot] ? bytes : g->filter_bytes[slot];
                memcpy(s_filters[slot] + ST_FILTER - bytes, g->filters[slot], (size_t)n);
            }
            filters[slot] = s_filters[slot] + ST_FILTER - bytes;
        }
        in_bytes = tensor_field(p, 0, 0) * tensor_field(p, 0, 1) * tensor_field(p, 0, 2);
        out_bytes = tensor_field(p, p[2] - 1, 0) * tensor_field(p, p[2] - 1, 1) *
                    tensor_field(p, p[2] - 1, 2);
        if (!fits || need > ST_SCRATCH || in_bytes > ST_IO || out_bytes > ST_IO) {
            continue;
        }
        input = s_input + ST_IO - in_bytes;
        output = s_output + ST_IO - out_bytes;
        memcpy(input, g->input, (size_t)(in_bytes < g->input_bytes ? in_bytes : g->input_bytes));
        memset(s_output, ST_PREFILL, sizeof(s_output));
        ctx.buf = s_scratch + ST_SCRATCH - (need - 1);
        ctx.size = need - 1;
        failed += edgeplus_patch_stage(&ctx, p, words, filters, input, output) !=
                  EDGEPLUS_ERR_SCRATCH;
        failed += !untouched(s_output, ST_IO);
        ctx.buf = s_scratch + ST_SCRATCH - need;
        ctx.size = need;
        st = edgeplus_patch_stage(&ctx, p, words, filters, input, output);
        if (st != EDGEPLUS_OK) {
            printf("  corrupted program %ld: accepted by the check, the run says %s\n", (long)m,
                   edgeplus_status_str(st));
            failed++;
        }
        failed += !untouched(s_output, ST_IO - out_bytes);
        /* every output element written, and the same result with all the scratch (bigger
         * conv pixel blocks) holding other garbage: the output first filled otherwise */
        memcpy(s_expect, output, (size_t)out_bytes);
        memset(output, ~ST_PREFILL, (size_t)out_bytes);
        memset(s_scratch, 0xC3, sizeof(s_scratch));
        ctx.buf = s_scratch;
        ctx.size = ST_SCRATCH;
        st = edgeplus_patch_stage(&ctx, p, words, filters, input, output);
        failed += st != EDGEPLUS_OK || memcmp(output, s_expect, (size_t)out_bytes) != 0;
        ran++;
    }
    CHECK(unknown == 0, "%ld unknown statuses", (long)unknown);
    CHECK(failed == 0, "%ld corrupted programs misbehaved", (long)failed);
    /* most corruptions are refused; enough survive to exercise the executor */
    CHECK(accepted < ST_MUTANTS / 2 && ran >= ST_MUTANTS / 20, "accepted %ld, ran %ld",
          (long)accepted, (long)ran);
}

int edgeplus_run_stage_tests(int *checks)
{
    s_checks = 0;
    s_failures = 0;
    test_stage_golden();
    test_stage_truncated();
    test_stage_malformed();
    test_stage_corrupted();
    *checks += s_checks;
    return s_failures;
}
