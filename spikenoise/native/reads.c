/* Exact single reads of multi-level cells from the counter-based stream, fused with their use.
 *
 * A read of a cell stored at level l is #{k : thr[l, k] <= u} for u uniform on the 2**52 grid,
 * thr[l, k] = rint(P(read <= k | l) * 2**52): the law of ThresholdReads in noise/_tables.py. Read
 * number n (a pure function of (key, n), so any thread count and a backward pass see the same
 * reads) takes the top 16 bits of u from 16-bit slice n % 4 of word n / 4 of the stream, and the
 * 36 bits below them from word 2**62 + n (a disjoint part of the same stream), drawn only when the
 * 16 bits do not decide the read (probability about (L - 1) * 2**-16). A 1024-entry table of read
 * levels per level decides most reads from the top 10 bits alone (SN_UNDECIDED there: a threshold
 * lies in this bucket), a second 64-entry table per such bucket decides them from the top 16 bits.
 *
 * Read numbering: read weight w (flat index in the level tensor, numel weights) of row r (a batch
 * row, or one draw) is read n = r * numel + w. A Linear (out, in) passes its levels transposed
 * (in, out), so its read of weight (j, i) for batch row b is n = (b * in + i) * out + j.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "rng.h"

#define SN_MAX_LEVELS 255
#define SN_LOW_BASE (1ULL << 62)
#define SN_UNDECIDED 0xFF

typedef struct {
    const uint64_t *thr; /* (L, L - 1) thresholds on the 2**52 grid */
    const float *vals;   /* (L,) value of each level */
    int K;               /* L - 1 */
    float *lut2;         /* (slots, 64): the value from the next 6 bits in an undecided 10-bit bucket, or NaN */
    int32_t *slot;       /* (L, 1024): the lut2 row of an undecided 10-bit bucket */
    uint8_t lut[];       /* (L, 1024): the read level from the top 10 bits, or SN_UNDECIDED */
} sn_law;

/* #{k : top `bits` bits of thr[k] < c} and whether some threshold's top bits equal c */
static int sn_count_below(const uint64_t *t, int K, int shift, uint64_t c, int *tie) {
    int r = 0;
    *tie = 0;
    for (int k = 0; k < K; k++) {
        uint64_t h = t[k] >> shift;
        if (h < c) r++;
        else if (h == c) *tie = 1;
    }
    return r;
}

static void sn_law_free(sn_law *law) {
    if (!law) return;
    free(law->lut2);
    free(law->slot);
    free(law);
}

static sn_law *sn_law_new(const uint64_t *thr, int L, const float *vals) {
    int K = L - 1, tie, slots = 0;
    sn_law *law = malloc(sizeof(sn_law) + (size_t)L * 1024);
    if (!law) return NULL;
    law->thr = thr;
    law->vals = vals;
    law->K = K;
    law->slot = malloc(sizeof(int32_t) * (size_t)L * 1024);
    law->lut2 = malloc(sizeof(float) * 64 * (size_t)(L * K > 0 ? L * K : 1)); /* <= K undecided buckets per level */
    if (!law->slot || !law->lut2) {
        sn_law_free(law);
        return NULL;
    }
    for (int l = 0; l < L; l++) {
        const uint64_t *t = thr + (size_t)l * K;
        for (int c10 = 0; c10 < 1024; c10++) {
            int r = sn_count_below(t, K, 42, (uint64_t)c10, &tie);
            law->slot[l * 1024 + c10] = -1;
            if (!tie) {
                law->lut[l * 1024 + c10] = (uint8_t)r;
                continue;
            }
            law->lut[l * 1024 + c10] = SN_UNDECIDED;
            law->slot[l * 1024 + c10] = slots;
            for (int lo = 0; lo < 64; lo++) {
                int r16 = sn_count_below(t, K, 36, ((uint64_t)c10 << 6) | (uint64_t)lo, &tie);
                law->lut2[slots * 64 + lo] = tie ? NAN : vals[r16];
            }
            slots++;
        }
    }
    return law;
}

/* the read when the top 16 bits did not decide it: all 52 bits (probability about (L-1) 2**-16) */
static int sn_read_slow(const sn_law *law, int l, uint32_t c16, uint64_t key, uint64_t n) {
    const uint64_t *t = law->thr + (size_t)l * law->K;
    uint64_t u = ((uint64_t)c16 << 36) | (sn_word(key, SN_LOW_BASE + n) >> 28);
    int r = 0;
    for (int k = 0; k < law->K; k++) r += t[k] <= u;
    return r;
}

static float sn_value_refine(const sn_law *law, int l, uint32_t c16, uint64_t key, uint64_t n) {
    float v = law->lut2[law->slot[(l << 10) | (c16 >> 6)] * 64 + (c16 & 0x3F)];
    return v == v ? v : law->vals[sn_read_slow(law, l, c16, key, n)];
}

/* the value of read n of level l whose top 16 bits are c16 */
static inline float sn_value(const sn_law *law, int l, uint32_t c16, uint64_t key, uint64_t n) {
    int r = law->lut[(l << 10) | (c16 >> 6)];
    return r != SN_UNDECIDED ? law->vals[r] : sn_value_refine(law, l, c16, key, n);
}

/* the value of read n of level l, its 16 bits taken from `word` (word n / 4 of the stream) */
static inline float sn_read(const sn_law *law, int l, uint64_t word, uint64_t key, uint64_t n) {
    return sn_value(law, l, (uint32_t)(word >> ((n & 3) * 16)) & 0xFFFFu, key, n);
}

int sn_reads_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* the values of the 4 reads n .. n + 3 (n a multiple of 4) of levels l[0..3], from one word */
#define SN_READ4(law, l, key, n, v0, v1, v2, v3)                                               \
    do {                                                                                       \
        uint64_t w_ = sn_word((key), (n) >> 2);                                                \
        v0 = sn_value((law), (l)[0], (uint32_t)w_ & 0xFFFFu, (key), (n));                      \
        v1 = sn_value((law), (l)[1], (uint32_t)(w_ >> 16) & 0xFFFFu, (key), (n) + 1);          \
        v2 = sn_value((law), (l)[2], (uint32_t)(w_ >> 32) & 0xFFFFu, (key), (n) + 2);          \
        v3 = sn_value((law), (l)[3], (uint32_t)(w_ >> 48), (key), (n) + 3);                    \
    } while (0)

/* out[w] = vals[read n0 + w of level lev[w]] for w < len (any n0) */
static void sn_fill(const sn_law *law, const uint8_t *lev, uint64_t key, uint64_t n0,
                    int64_t len, float *out) {
    int64_t w = 0;
    uint64_t n = n0;
    for (; w < len && (n & 3); w++, n++) out[w] = sn_read(law, lev[w], sn_word(key, n >> 2), key, n);
    for (; w + 4 <= len; w += 4, n += 4) SN_READ4(law, lev + w, key, n, out[w], out[w + 1], out[w + 2], out[w + 3]);
    for (; w < len; w++, n++) out[w] = sn_read(law, lev[w], sn_word(key, n >> 2), key, n);
}

/* Reads n = r * numel + w of level lev[w], rows r < n_rows, in blocks of 4096 per thread: their
 * values (law's vals) into fout[r, w] (float32), or, with fout NULL, their level indices (a law
 * whose vals are 0 .. L-1) into bout[r, w] (uint8). */
static void sn_read_blocks(const sn_law *law, uint64_t key, int64_t n_rows, int64_t numel, const uint8_t *lev,
                           float *fout, uint8_t *bout, int nthreads) {
    const int64_t block = 4096;
    int64_t nblk = (numel + block - 1) / block;
    int64_t total = n_rows * nblk;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t t = 0; t < total; t++) {
        int64_t r = t / nblk, w0 = (t % nblk) * block, len = w0 + block < numel ? block : numel - w0;
        if (fout) {
            sn_fill(law, lev + w0, key, (uint64_t)(r * numel + w0), len, fout + r * numel + w0);
        } else {
            float buf[4096];
            sn_fill(law, lev + w0, key, (uint64_t)(r * numel + w0), len, buf);
            uint8_t *o = bout + r * numel + w0;
            for (int64_t w = 0; w < len; w++) o[w] = (uint8_t)buf[w];
        }
    }
}

/* out[r, w] = vals[read n = r * numel + w of level lev[w]], rows r < n_rows (float32).
 * Returns 0, or -1 when memory runs out. */
int sn_read_values(uint64_t key, int64_t n_rows, int64_t numel, const uint8_t *lev, const uint64_t *thr, int L,
                   const float *vals, float *out, int nthreads) {
    sn_law *law = sn_law_new(thr, L, vals);
    if (!law) return -1;
    sn_read_blocks(law, key, n_rows, numel, lev, out, NULL, nthreads);
    sn_law_free(law);
    return 0;
}

/* sum_t x[t] * value(read n0 + t of level lev[t]) over t < len: 4 accumulators, fixed order */
static float sn_dot(const sn_law *law, const uint8_t *lev, const float *x, uint64_t key, uint64_t n0, int64_t len) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, v0, v1, v2, v3;
    int64_t t = 0;
    uint64_t n = n0;
    for (; t < len && (n & 3); t++, n++) a0 += x[t] * sn_read(law, lev[t], sn_word(key, n >> 2), key, n);
    for (; t + 4 <= len; t += 4, n += 4) {
        SN_READ4(law, lev + t, key, n, v0, v1, v2, v3);
        a0 += x[t] * v0;
        a1 += x[t + 1] * v1;
        a2 += x[t + 2] * v2;
        a3 += x[t + 3] * v3;
    }
    for (; t < len; t++, n++) a1 += x[t] * sn_read(law, lev[t], sn_word(key, n >> 2), key, n);
    return (a0 + a1) + (a2 + a3);
}

/* y[t] += xv * value(read n0 + t of level lev[t]) for t < len */
static void sn_axpy(const sn_law *law, const uint8_t *lev, float xv, uint64_t key, uint64_t n0, int64_t len,
                    float *restrict y) {
    float v0, v1, v2, v3;
    int64_t t = 0;
    uint64_t n = n0;
    for (; t < len && (n & 3); t++, n++) y[t] += xv * sn_read(law, lev[t], sn_word(key, n >> 2), key, n);
    for (; t + 4 <= len; t += 4, n += 4) {
        SN_READ4(law, lev + t, key, n, v0, v1, v2, v3);
        y[t] += xv * v0;
        y[t + 1] += xv * v1;
        y[t + 2] += xv * v2;
        y[t + 3] += xv * v3;
    }
    for (; t < len; t++, n++) y[t] += xv * sn_read(law, lev[t], sn_word(key, n >> 2), key, n);
}

/* Forward of a Linear with a fresh read per (b, j, i): y[b, j] = sum_i x[b, i] * (v0 + step * read),
 * summed as v0 * sum_i x[b, i] + step * sum_i x[b, i] * read (levels equally spaced).
 * x (B, in), levt (in, out): the level of weight (j, i) at levt[i, j]; y (B, out), float32. The
 * read of weight (j, i) for row b is read n = (b * in + i) * out + j, so the reads of one input
 * are consecutive (4 per word) and a zero input (it multiplies its reads by 0) reads nothing. */
int sn_read_linear(uint64_t key, int64_t B, int64_t out, int64_t in, const float *x, const uint8_t *levt,
                   const uint64_t *thr, int L, float v0, float step, float *y, int nthreads) {
    float idx[SN_MAX_LEVELS];
    for (int l = 0; l < L && l < SN_MAX_LEVELS; l++) idx[l] = (float)l;
    sn_law *law = sn_law_new(thr, L, idx);
    if (!law) return -1;
    const int64_t jblock = 256; /* a multiple of 4 */
    int64_t njb = (out + jblock - 1) / jblock;
    int64_t total = B * njb;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t t = 0; t < total; t++) {
        int64_t b = t / njb, j0 = (t % njb) * jblock, len = j0 + jblock < out ? jblock : out - j0;
        float *yb = y + b * out + j0;
        memset(yb, 0, sizeof(float) * (size_t)len);
        float sx = 0.0f;
        for (int64_t i = 0; i < in; i++) {
            float xv = x[b * in + i];
            if (xv == 0.0f) continue;
            sx += xv;
            sn_axpy(law, levt + i * out + j0, xv, key, (uint64_t)((b * in + i) * out + j0), len, yb);
        }
        for (int64_t j = 0; j < len; j++) yb[j] = v0 * sx + step * yb[j];
    }
    sn_law_free(law);
    return 0;
}

/* Backward of sn_read_linear in x: gx[b, i] = sum_j g[b, j] * (v0 + step * read (b, j, i)), the same reads
 * (zero inputs included: their reads are what the forward would have drawn). */
int sn_read_linear_grad_input(uint64_t key, int64_t B, int64_t out, int64_t in, const float *g,
                              const uint8_t *levt, const uint64_t *thr, int L, float v0, float step, float *gx,
                              int nthreads) {
    float idx[SN_MAX_LEVELS];
    for (int l = 0; l < L && l < SN_MAX_LEVELS; l++) idx[l] = (float)l;
    sn_law *law = sn_law_new(thr, L, idx);
    if (!law) return -1;
    int64_t total = B * in;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t t = 0; t < total; t++) {
        int64_t b = t / in, i = t % in;
        float sg = 0.0f;
        for (int64_t j = 0; j < out; j++) sg += g[b * out + j];
        gx[t] = v0 * sg + step * sn_dot(law, levt + i * out, g + b * out, key, (uint64_t)(t * out), out);
    }
    sn_law_free(law);
    return 0;
}

/* out[r, w] = level index of read n = r * numel + w of level lev[w] (the reads of sn_read_values) */
int sn_read_levels(uint64_t key, int64_t n_rows, int64_t numel, const uint8_t *lev, const uint64_t *thr, int L,
                   uint8_t *out, int nthreads) {
    float idx[SN_MAX_LEVELS];
    for (int l = 0; l < L && l < SN_MAX_LEVELS; l++) idx[l] = (float)l;
    sn_law *law = sn_law_new(thr, L, idx);
    if (!law) return -1;
    sn_read_blocks(law, key, n_rows, numel, lev, NULL, out, nthreads);
    sn_law_free(law);
    return 0;
}

/* y[b, j] = sum_i x[b, i] * (v0 + step * R[b, i, j]): a Linear with read levels R (B, in, out)
 * materialized (sn_read_levels of the transposed levels), skipping zero inputs; the same sums, in
 * the same order, as sn_read_linear, so both give identical results for the same reads. */
int sn_levels_linear(int64_t B, int64_t out, int64_t in, const float *x, const uint8_t *R, float v0, float step,
                     float *y, int nthreads) {
    const int64_t jblock = 256;
    int64_t njb = (out + jblock - 1) / jblock;
    int64_t total = B * njb;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t t = 0; t < total; t++) {
        int64_t b = t / njb, j0 = (t % njb) * jblock, len = j0 + jblock < out ? jblock : out - j0;
        float *restrict yb = y + b * out + j0;
        memset(yb, 0, sizeof(float) * (size_t)len);
        float sx = 0.0f;
        for (int64_t i = 0; i < in; i++) {
            float xv = x[b * in + i];
            if (xv == 0.0f) continue;
            sx += xv;
            const uint8_t *r = R + (b * in + i) * out + j0;
            for (int64_t j = 0; j < len; j++) yb[j] += xv * (float)r[j];
        }
        for (int64_t j = 0; j < len; j++) yb[j] = v0 * sx + step * yb[j];
    }
    return 0;
}
