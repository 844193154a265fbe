/* Exact single reads of multi-level cells from the counter-based stream, fused with their use.
 *
 * A read of a cell stored at level l is #{k : thr[l, k] <= u} for u uniform on the 2**52 grid,
 * thr[l, k] = rint(P(read <= k | l) * 2**52): the law of ThresholdReads in noise/_tables.py. Read
 * number n (a pure function of (key, n), so any thread count and a backward pass see the same
 * reads) takes the top 16 bits of u from 16-bit slice n % 4 of word n / 4 of the stream, and the
 * 36 bits below them from word 2**62 + n (a disjoint part of the same stream), drawn only when the
 * 16 bits do not decide the read (probability about (L - 1) * 2**-16). A 256-entry table per level
 * decides most reads from the top 8 bits alone; 0xFF there means "a threshold lies in this bucket".
 *
 * Read numbering: read weight w (flat index in the weight tensor, numel weights) of row r (a batch
 * row, or one draw) is read n = r * numel + w. For a Linear (out, in) that is
 * n = (b * out + j) * in + i.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "rng.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define SN_MAX_LEVELS 255
#define SN_LOW_BASE (1ULL << 62)
#define SN_UNDECIDED 0xFF

typedef struct {
    const uint64_t *thr; /* (L, L - 1) thresholds on the 2**52 grid */
    int K;               /* L - 1 */
    uint8_t lut[];       /* (L, 256): read level from the top 8 bits, or SN_UNDECIDED */
} sn_law;

static sn_law *sn_law_new(const uint64_t *thr, int L) {
    int K = L - 1;
    sn_law *law = malloc(sizeof(sn_law) + (size_t)L * 256);
    if (!law) return NULL;
    law->thr = thr;
    law->K = K;
    for (int l = 0; l < L; l++) {
        const uint64_t *t = thr + (size_t)l * K;
        for (int c8 = 0; c8 < 256; c8++) {
            int r = 0, undecided = 0;
            for (int k = 0; k < K; k++) {
                uint64_t h = t[k] >> 44;
                if (h < (uint64_t)c8) r++;
                else if (h == (uint64_t)c8) undecided = 1;
            }
            law->lut[l * 256 + c8] = undecided ? SN_UNDECIDED : (uint8_t)r;
        }
    }
    return law;
}

/* the read when the top 8 bits did not decide it: 16 bits, then (rarely) all 52 */
static int sn_read_slow(const sn_law *law, int l, uint32_t c16, uint64_t key, uint64_t n) {
    const uint64_t *t = law->thr + (size_t)l * law->K;
    int r = 0, mixed = 0;
    for (int k = 0; k < law->K; k++) {
        uint64_t h = t[k] >> 36;
        if (h < c16) r++;
        else if (h == c16) mixed = 1;
    }
    if (!mixed) return r;
    uint64_t u = ((uint64_t)c16 << 36) | (sn_word(key, SN_LOW_BASE + n) >> 28);
    r = 0;
    for (int k = 0; k < law->K; k++) r += t[k] <= u;
    return r;
}

static inline int sn_read(const sn_law *law, int l, uint64_t word, uint64_t key, uint64_t n) {
    uint32_t c16 = (uint32_t)(word >> ((n & 3) * 16)) & 0xFFFFu;
    int r = law->lut[l * 256 + (c16 >> 8)];
    return r != SN_UNDECIDED ? r : sn_read_slow(law, l, c16, key, n);
}

int sn_reads_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* the 4 reads n .. n + 3 (n a multiple of 4) of levels l[0..3], from one word: their values */
#define SN_READ4(law, l, key, n, vals, v0, v1, v2, v3)                                        \
    do {                                                                                       \
        uint64_t w_ = sn_word((key), (n) >> 2);                                                \
        v0 = (vals)[sn_read((law), (l)[0], w_, (key), (n))];                                   \
        v1 = (vals)[sn_read((law), (l)[1], w_, (key), (n) + 1)];                               \
        v2 = (vals)[sn_read((law), (l)[2], w_, (key), (n) + 2)];                               \
        v3 = (vals)[sn_read((law), (l)[3], w_, (key), (n) + 3)];                               \
    } while (0)

/* out[w] = vals[read n0 + w of level lev[w]] for w < len (any n0) */
static void sn_fill(const sn_law *law, const uint8_t *lev, const float *vals, uint64_t key, uint64_t n0,
                    int64_t len, float *out) {
    int64_t w = 0;
    uint64_t n = n0;
    for (; w < len && (n & 3); w++, n++) out[w] = vals[sn_read(law, lev[w], sn_word(key, n >> 2), key, n)];
    for (; w + 4 <= len; w += 4, n += 4) SN_READ4(law, lev + w, key, n, vals, out[w], out[w + 1], out[w + 2], out[w + 3]);
    for (; w < len; w++, n++) out[w] = vals[sn_read(law, lev[w], sn_word(key, n >> 2), key, n)];
}

/* out[r, w] = vals[read n = r * numel + w of level lev[w]], rows r < n_rows (float32).
 * Returns 0, or -1 when memory runs out. */
int sn_read_values(uint64_t key, int64_t n_rows, int64_t numel, const uint8_t *lev, const uint64_t *thr, int L,
                   const float *vals, float *out, int nthreads) {
    sn_law *law = sn_law_new(thr, L);
    if (!law) return -1;
    const int64_t block = 4096;
    int64_t nblk = (numel + block - 1) / block;
    int64_t total = n_rows * nblk;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t t = 0; t < total; t++) {
        int64_t r = t / nblk, w0 = (t % nblk) * block, w1 = w0 + block < numel ? w0 + block : numel;
        sn_fill(law, lev + w0, vals, key, (uint64_t)(r * numel + w0), w1 - w0, out + r * numel + w0);
    }
    free(law);
    return 0;
}

/* sum_i x[i] * vals[read base + i of level lev[i]] over all i < in: 4 accumulators, fixed order */
static float sn_dot_dense(const sn_law *law, const uint8_t *lev, const float *x, const float *vals, uint64_t key,
                          uint64_t base, int64_t in) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, v0, v1, v2, v3;
    int64_t i = 0;
    uint64_t n = base;
    for (; i < in && (n & 3); i++, n++) a0 += x[i] * vals[sn_read(law, lev[i], sn_word(key, n >> 2), key, n)];
    for (; i + 4 <= in; i += 4, n += 4) {
        SN_READ4(law, lev + i, key, n, vals, v0, v1, v2, v3);
        a0 += x[i] * v0;
        a1 += x[i + 1] * v1;
        a2 += x[i + 2] * v2;
        a3 += x[i + 3] * v3;
    }
    for (; i < in; i++, n++) a1 += x[i] * vals[sn_read(law, lev[i], sn_word(key, n >> 2), key, n)];
    return (a0 + a1) + (a2 + a3);
}

/* the same sum over the m non-zero inputs idx[s] (values xs[s]): one word per read, no branches */
static float sn_dot_sparse(const sn_law *law, const uint8_t *lev, const int32_t *idx, const float *xs,
                           const float *vals, uint64_t key, uint64_t base, int64_t m) {
    float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t s = 0; s < m; s++) {
        int64_t i = idx[s];
        uint64_t n = base + (uint64_t)i;
        a[s & 3] += xs[s] * vals[sn_read(law, lev[i], sn_word(key, n >> 2), key, n)];
    }
    return (a[0] + a[1]) + (a[2] + a[3]);
}

/* Forward of a Linear with a fresh read per (b, j, i): y[b, j] = sum_i x[b, i] * vals[read].
 * x (B, in), lev (out, in), y (B, out), float32. A row with few non-zero inputs reads only those
 * (a zero input multiplies its read by 0). Returns 0, or -1 when memory runs out. */
int sn_read_linear(uint64_t key, int64_t B, int64_t out, int64_t in, const float *x, const uint8_t *lev,
                   const uint64_t *thr, int L, const float *vals, float *y, int nthreads) {
    sn_law *law = sn_law_new(thr, L);
    size_t nx = (size_t)(B * in > 0 ? B * in : 1);
    int32_t *idx = malloc(sizeof(int32_t) * nx);
    float *xs = malloc(sizeof(float) * nx);
    int64_t *cnt = malloc(sizeof(int64_t) * (size_t)(B > 0 ? B : 1));
    if (!law || !idx || !xs || !cnt) {
        free(law); free(idx); free(xs); free(cnt);
        return -1;
    }
    for (int64_t b = 0; b < B; b++) {
        int64_t m = 0;
        for (int64_t i = 0; i < in; i++) {
            float v = x[b * in + i];
            if (v != 0.0f) {
                idx[b * in + m] = (int32_t)i;
                xs[b * in + m++] = v;
            }
        }
        cnt[b] = m;
    }
    const int64_t jblock = 16;
    int64_t njb = (out + jblock - 1) / jblock;
    int64_t total = B * njb;
#pragma omp parallel for schedule(dynamic, 4) num_threads(nthreads)
    for (int64_t t = 0; t < total; t++) {
        int64_t b = t / njb, j0 = (t % njb) * jblock, j1 = j0 + jblock < out ? j0 + jblock : out;
        int64_t m = cnt[b];
        int sparse = 3 * m < in; /* a word per read beats a word per 4 reads below 1/3 density */
        for (int64_t j = j0; j < j1; j++) {
            uint64_t base = (uint64_t)((b * out + j) * in);
            y[b * out + j] = sparse ? sn_dot_sparse(law, lev + j * in, idx + b * in, xs + b * in, vals, key, base, m)
                                    : sn_dot_dense(law, lev + j * in, x + b * in, vals, key, base, in);
        }
    }
    free(law); free(idx); free(xs); free(cnt);
    return 0;
}

/* Backward of sn_read_linear in x: gx[b, i] = sum_j g[b, j] * vals[read (b, j, i)], the same reads
 * (every i, zero inputs included: their read is what the forward would have drawn). */
int sn_read_linear_grad_input(uint64_t key, int64_t B, int64_t out, int64_t in, const float *g,
                              const uint8_t *lev, const uint64_t *thr, int L, const float *vals, float *gx,
                              int nthreads) {
    sn_law *law = sn_law_new(thr, L);
    float *row = malloc(sizeof(float) * (size_t)(in > 0 ? in : 1) * (size_t)(nthreads > 0 ? nthreads : 1));
    if (!law || !row) {
        free(law); free(row);
        return -1;
    }
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t b = 0; b < B; b++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *r = row + (size_t)tid * (size_t)in;
        float *gb = gx + b * in;
        memset(gb, 0, sizeof(float) * (size_t)in);
        for (int64_t j = 0; j < out; j++) {
            float gj = g[b * out + j];
            if (gj == 0.0f) continue;
            sn_fill(law, lev + j * in, vals, key, (uint64_t)((b * out + j) * in), in, r);
            for (int64_t i = 0; i < in; i++) gb[i] += gj * r[i];
        }
    }
    free(law); free(row);
    return 0;
}
