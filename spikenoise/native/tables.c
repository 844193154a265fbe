/* Exact inverse-CDF draws from InverseCDFTable (spikenoise/noise/_tables.py), natively.
 *
 * One 64-bit word of the counter-based stream per draw (word `index` of stream `key`): its top
 * `bits` bits are the uniform u on the 2**bits grid and its top `lut_bits` bits the look-up
 * bucket. A bucket without a threshold inside gives the outcome at once. A mixed bucket's entry
 * is SN_MIXED_BASE + the position of the first key above the bucket's start; the outcome is that
 * of the first key above row * 2**bits + u, found by stepping from there (the keys inside one
 * bucket are few). So this is the same inversion, with the same thresholds at the same
 * resolution, as the torch path (which finds that key by binary search).
 * Draw k depends only on (key, k): the thread count never changes a result.
 */
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "rng.h"

/* look-up entries below this are mixed buckets: entry - SN_MIXED_BASE is a key position */
#define SN_MIXED_BASE INT32_MIN
#define SN_MIXED_LIMIT (-(1 << 30))

typedef struct {
    const int64_t *keys;     /* sorted row * 2**bits + threshold, all rows */
    const int32_t *lut;      /* (n_rows << lut_bits): outcome, or SN_MIXED_BASE + key position */
    const int64_t *value_at; /* outcome of each key position */
    int64_t n_rows;
    int bits, lut_bits;
} sn_table;

static inline int64_t sn_draw(const sn_table *t, int64_t row, uint64_t word) {
    const uint64_t u = word >> (64 - t->bits);
    const int32_t v = t->lut[(row << t->lut_bits) | (int64_t)(u >> (t->bits - t->lut_bits))];
    if (__builtin_expect(v >= SN_MIXED_LIMIT, 1)) return v;
    /* the row's last key is row * 2**bits + 2**bits > target: the step stops inside the row */
    const int64_t target = (row << t->bits) + (int64_t)u;
    int64_t k = (int64_t)v - (int64_t)SN_MIXED_BASE;
    while (t->keys[k] <= target) k++;
    return t->value_at[k];
}

static inline int64_t sn_row_at(const void *rows, int rows64, int64_t i) {
    return rows64 ? ((const int64_t *)rows)[i] : (int64_t)((const int32_t *)rows)[i];
}

/* Draw i of the stream `key` for row rows[i]: 0 and *v = the outcome, or -1 (row out of range). */
static inline int sn_row_draw(const sn_table *t, const void *rows, int rows64, int64_t i, uint64_t key,
                              int64_t *v) {
    int64_t r = sn_row_at(rows, rows64, i);
    if (r < 0 || r >= t->n_rows) return -1;
    *v = sn_draw(t, r, sn_word(key, (uint64_t)i));
    return 0;
}

/* One draw per row index; out (int64) gets the outcome. Returns how many row indices were out
 * of range (their outputs are left unset). */
int64_t sn_table_sample(const int64_t *keys, const int32_t *lut,
                        const int64_t *value_at, int64_t n_rows, int bits, int lut_bits,
                        const void *rows, int rows64, int64_t n, uint64_t key, int64_t *out, int threads) {
    sn_table t = {keys, lut, value_at, n_rows, bits, lut_bits};
    int64_t bad = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : bad)
    for (int64_t i = 0; i < n; i++)
        if (sn_row_draw(&t, rows, rows64, i, key, &out[i])) bad++;
    return bad;
}

/* The outcome of given uniforms u[i] (on the 2**bits grid) for rows[i]: the inversion itself,
 * without the stream (the tests check it against a search in numpy). Returns as sn_table_sample. */
int64_t sn_table_invert(const int64_t *keys, const int32_t *lut, const int64_t *value_at, int64_t n_rows, int bits,
                        int lut_bits, const int64_t *rows, const int64_t *u, int64_t n, int64_t *out) {
    sn_table t = {keys, lut, value_at, n_rows, bits, lut_bits};
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= n_rows || u[i] < 0 || u[i] >= ((int64_t)1 << bits)) { bad++; continue; }
        out[i] = sn_draw(&t, rows[i], (uint64_t)u[i] << (64 - bits));
    }
    return bad;
}

/* As sn_table_sample, writing lookup[outcome] (elements of `elem` bytes; a negative outcome counts
 * from the end, as torch indexing does). Returns how many rows or outcomes were out of range. */
int64_t sn_table_sample_lookup(const int64_t *keys, const int32_t *lut,
                               const int64_t *value_at, int64_t n_rows, int bits, int lut_bits,
                               const void *rows, int rows64, int64_t n, uint64_t key,
                               const void *lookup, int64_t lookup_n, int elem, void *out, int threads) {
    sn_table t = {keys, lut, value_at, n_rows, bits, lut_bits};
    int64_t bad = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : bad)
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        if (sn_row_draw(&t, rows, rows64, i, key, &v)) { bad++; continue; }
        if (v < 0) v += lookup_n;
        if (v < 0 || v >= lookup_n) { bad++; continue; }
        memcpy((char *)out + i * elem, (const char *)lookup + v * elem, (size_t)elem);
    }
    return bad;
}

static inline int64_t sn_packed_at(const void *packed, int packed64, int64_t i) {
    return packed64 ? (int64_t)llrint(((const double *)packed)[i]) : (int64_t)lrintf(((const float *)packed)[i]);
}

typedef struct {
    sn_table t;
    const void *packed;
    int packed64, n_fields, err64;
    int64_t n_max, skip_upto;
    int64_t base[64];  /* level[j] * (n_max + 1): the row of count 0 of field j */
    int64_t shift[64]; /* where field j starts: the widths before it */
    int64_t mask[64];  /* 2**width[j] - 1 */
    uint64_t key;
    double alpha, beta;
    double weight[64]; /* beta * weight[j] * n_j is added too (the error-free part), 0 for none */
} sn_packed_job;

/* element i of a packed job, its output at `dst`; bad/over as in sn_add_packed_sums */
static inline void sn_packed_one(const sn_packed_job *job, int64_t i, void *dst, int64_t *bad, int64_t *over) {
    const int64_t p = sn_packed_at(job->packed, job->packed64, i);
    if (p < 0) { (*bad)++; *over = INT64_MAX; return; }
    int64_t top = 0;
    for (int j = 0; j < job->n_fields; j++) {
        const int64_t c = (p >> job->shift[j]) & job->mask[j];
        top = c > top ? c : top;
    }
    if (top <= job->skip_upto) return;
    if (top > job->n_max) { (*bad)++; *over = top > *over ? top : *over; return; }
    int64_t total = 0;
    double clean = 0.0;
    const uint64_t w0 = (uint64_t)i * (uint64_t)job->n_fields;
    for (int j = 0; j < job->n_fields; j++) {
        const int64_t c = (p >> job->shift[j]) & job->mask[j];
        clean += job->weight[j] * (double)c;
        if (c) total += sn_draw(&job->t, job->base[j] + c, sn_word(job->key, w0 + (uint64_t)j));
    }
    const double add = job->alpha * (double)total + job->beta * clean;
    if (job->err64) *(double *)dst += add;
    else *(float *)dst += (float)add;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SN_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl")))

/* 8 lanes at once: the same words, rows and outcomes as sn_packed_one (so the same results); lanes
 * whose bucket is mixed are finished one by one. Elements [i0, i1) write dst[0 .. i1 - i0).
 * Returns where it stopped: groups needing the scalar path (a negative element, a count beyond
 * the table, an element to skip) are handed back at once. */
SN_AVX512 static int64_t sn_packed_avx512(const sn_packed_job *job, int64_t i0, int64_t i1, void *dst) {
    const sn_table *t = &job->t;
    const __m512i lanes = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i gamma = _mm512_set1_epi64((long long)0x9E3779B97F4A7C15ULL);
    const __m512i m1 = _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ULL);
    const __m512i m2 = _mm512_set1_epi64((long long)0x94D049BB133111EBULL);
    const __m512i keyv = _mm512_set1_epi64((long long)job->key);
    const __m512i nmax = _mm512_set1_epi64(job->n_max);
    const __m512i skip = _mm512_set1_epi64(job->skip_upto);
    const __m256i limit = _mm256_set1_epi32(-(1 << 30));
    const __m512d alpha = _mm512_set1_pd(job->alpha);
    const __m128i ushift = _mm_cvtsi32_si128(64 - t->bits);
    const __m128i bshift = _mm_cvtsi32_si128(t->bits - t->lut_bits);
    const __m128i rshift = _mm_cvtsi32_si128(t->lut_bits);
    const int64_t nf = job->n_fields;
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        __m512i p;
        if (job->packed64) p = _mm512_cvtpd_epi64(_mm512_loadu_pd((const double *)job->packed + i));
        else p = _mm512_cvtps_epi64(_mm256_loadu_ps((const float *)job->packed + i));
        __m512i c[64];
        __m512i top = _mm512_setzero_si512();
        for (int j = 0; j < nf; j++) {
            c[j] = _mm512_and_si512(_mm512_srl_epi64(p, _mm_cvtsi32_si128((int)job->shift[j])),
                                    _mm512_set1_epi64(job->mask[j]));
            top = _mm512_max_epi64(top, c[j]);
        }
        if (_mm512_cmplt_epi64_mask(p, _mm512_setzero_si512()) || _mm512_cmpgt_epi64_mask(top, nmax)
            || _mm512_cmple_epi64_mask(top, skip))
            return i; /* rare: let the scalar path take this element */
        const __m512i w0 = _mm512_mullo_epi64(_mm512_add_epi64(_mm512_set1_epi64(i), lanes), _mm512_set1_epi64(nf));
        /* key + (w0 + j + 1) * gamma, stepped by gamma from field to field (wrapping, as in sn_word) */
        __m512i ctr = _mm512_add_epi64(keyv, _mm512_mullo_epi64(_mm512_add_epi64(w0, _mm512_set1_epi64(1)), gamma));
        __m512i total = _mm512_setzero_si512();
        __m512d clean = _mm512_setzero_pd();
        for (int j = 0; j < nf; j++) {
            /* same operations, in the same order, as the scalar loop: the same rounding */
            clean = _mm512_add_pd(clean, _mm512_mul_pd(_mm512_set1_pd(job->weight[j]), _mm512_cvtepi64_pd(c[j])));
            const __m512i cj = ctr;
            ctr = _mm512_add_epi64(ctr, gamma);
            const __mmask8 nz = _mm512_test_epi64_mask(c[j], c[j]);
            if (!nz) continue;
            /* sn_word(key, w0 + j): splitmix64 of this field's counter */
            __m512i z = cj;
            z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), m1);
            z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), m2);
            z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
            const __m512i u = _mm512_srl_epi64(z, ushift);
            const __m512i row = _mm512_add_epi64(_mm512_set1_epi64(job->base[j]), c[j]);
            const __m512i at = _mm512_or_si512(_mm512_sll_epi64(row, rshift), _mm512_srl_epi64(u, bshift));
            __m256i v = _mm512_mask_i64gather_epi32(_mm256_setzero_si256(), nz, at, t->lut, 4);
            __mmask8 mixed = _mm256_cmplt_epi32_mask(v, limit) & nz;
            if (mixed) {
                int32_t vv[8];
                int64_t rr[8], uu[8];
                _mm256_storeu_si256((__m256i *)vv, v);
                _mm512_storeu_si512(rr, row);
                _mm512_storeu_si512(uu, u);
                while (mixed) {
                    const int l = __builtin_ctz(mixed);
                    mixed &= (__mmask8)(mixed - 1);
                    const int64_t target = (rr[l] << t->bits) + uu[l];
                    int64_t k = (int64_t)vv[l] - (int64_t)SN_MIXED_BASE;
                    while (t->keys[k] <= target) k++;
                    vv[l] = (int32_t)t->value_at[k];
                }
                v = _mm256_loadu_si256((const __m256i *)vv);
            }
            total = _mm512_add_epi64(total, _mm512_cvtepi32_epi64(v));
        }
        const __m512d add = _mm512_add_pd(_mm512_mul_pd(_mm512_cvtepi64_pd(total), alpha),
                                          _mm512_mul_pd(clean, _mm512_set1_pd(job->beta)));
        if (job->err64) {
            double *d = (double *)dst + (i - i0);
            _mm512_storeu_pd(d, _mm512_add_pd(_mm512_loadu_pd(d), add));
        } else {
            float *d = (float *)dst + (i - i0);
            _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), _mm512_cvtpd_ps(add)));
        }
    }
    return i;
}
#endif

static int sn_simd = -1; /* -1: use AVX-512 when the CPU has it; 0: never (the tests compare both) */

/* 1 when the AVX-512 path is used (after the setting `on`: -1 auto, 0 off; other values: query) */
int sn_tables_simd(int on) {
    if (on == -1 || on == 0) sn_simd = on;
#if defined(__x86_64__) && defined(__GNUC__)
    return sn_simd != 0 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
           && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

/* err[o * err_stride + e] += alpha * sum_j (summed error of n_j reads of level level[j]) for the
 * packed counts `packed` (n_outer, n_inner) contiguous, element i = o * n_inner + e holding
 * sum_j n_j 2**(width[0] + ... + width[j - 1]) as an exactly integral float (float64 when
 * packed64, else float32), 0 <= n_j < 2**width[j], the widths adding up to at most 63.
 * Count n_j is drawn from table row level[j] * (n_max + 1) + n_j with word i * n_fields + j; a
 * zero count draws nothing (its row is the point mass at 0). Only elements with some count above
 * `skip_upto` are done (-1: all); elements with a count above n_max (no row) are left unchanged:
 * stats[0] gets how many, stats[1] their largest count (stats[1] = -1: a negative element).
 * `weight` (NULL: none): beta * sum_j weight[j] * n_j is added as well (the error-free output when
 * the fields count every stored level: weight[j] is level[j]'s value).
 */
void sn_add_packed_sums(const int64_t *restrict keys, const int32_t *restrict lut, const int64_t *restrict value_at,
                        int64_t n_rows, int bits, int lut_bits, const void *packed, int packed64, int64_t n_outer,
                        int64_t n_inner, int n_fields, const int64_t *restrict width, const int64_t *restrict level,
                        int64_t n_max, int64_t skip_upto, uint64_t key, void *err, int err64,
                        int64_t err_stride, double alpha, const double *weight, double beta, int threads,
                        int64_t *restrict stats) {
    sn_packed_job job = {{keys, lut, value_at, n_rows, bits, lut_bits}, packed, packed64, n_fields, err64,
                         n_max, skip_upto, {0}, {0}, {0}, key, alpha, beta, {0}};
    for (int j = 0, at = 0; j < n_fields && j < 64; at += (int)width[j], j++) {
        job.base[j] = level[j] * (n_max + 1);
        job.shift[j] = at;
        job.mask[j] = width[j] >= 63 ? INT64_MAX : (((int64_t)1 << width[j]) - 1);
        job.weight[j] = weight ? weight[j] : 0.0;
    }
    const int simd = sn_tables_simd(1);
    const size_t esize = err64 ? sizeof(double) : sizeof(float);
    const int64_t n = n_outer * n_inner;
    const int64_t block = 4096;
    int64_t bad = 0, over = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : bad) reduction(max : over)
    for (int64_t b0 = 0; b0 < n; b0 += block) {
        const int64_t b1 = b0 + block < n ? b0 + block : n;
        int64_t o = b0 / n_inner, e = b0 - o * n_inner; /* one division per block, not per element */
        int64_t i = b0;
        while (i < b1) {
            /* a run of elements in one output row: contiguous in err */
            const int64_t run_end = b1 < i + (n_inner - e) ? b1 : i + (n_inner - e);
            char *dst = (char *)err + (size_t)(o * err_stride + e) * esize;
            const int64_t run0 = i;
            while (i < run_end) {
#if defined(__x86_64__) && defined(__GNUC__)
                if (simd) i = sn_packed_avx512(&job, i, run_end, dst + (size_t)(i - run0) * esize);
                if (i >= run_end) break;
#endif
                sn_packed_one(&job, i, dst + (size_t)(i - run0) * esize, &bad, &over);
                i++;
            }
            e += run_end - run0;
            if (e == n_inner) { e = 0; o++; }
        }
    }
    stats[0] = bad;
    stats[1] = over == INT64_MAX ? -1 : over;
}
