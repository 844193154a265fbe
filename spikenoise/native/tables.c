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

/* One draw per row index; out (int64) gets the outcome. Returns how many row indices were out
 * of range (their outputs are left unset). */
int64_t sn_table_sample(const int64_t *keys, const int32_t *lut,
                        const int64_t *value_at, int64_t n_rows, int bits, int lut_bits,
                        const void *rows, int rows64, int64_t n, uint64_t key, int64_t *out, int threads) {
    sn_table t = {keys, lut, value_at, n_rows, bits, lut_bits};
    int64_t bad = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : bad)
    for (int64_t i = 0; i < n; i++) {
        int64_t r = sn_row_at(rows, rows64, i);
        if (r < 0 || r >= n_rows) { bad++; continue; }
        out[i] = sn_draw(&t, r, sn_word(key, (uint64_t)i));
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
        int64_t r = sn_row_at(rows, rows64, i);
        if (r < 0 || r >= n_rows) { bad++; continue; }
        int64_t v = sn_draw(&t, r, sn_word(key, (uint64_t)i));
        if (v < 0) v += lookup_n;
        if (v < 0 || v >= lookup_n) { bad++; continue; }
        memcpy((char *)out + i * elem, (const char *)lookup + v * elem, (size_t)elem);
    }
    return bad;
}

static inline int64_t sn_packed_at(const void *packed, int packed64, int64_t i) {
    return packed64 ? (int64_t)llrint(((const double *)packed)[i]) : (int64_t)lrintf(((const float *)packed)[i]);
}

/* err[o * err_stride + e] += alpha * sum_j (summed error of n_j reads of level level[j]) for the
 * packed counts `packed` (n_outer, n_inner) contiguous, element i = o * n_inner + e holding
 * sum_j n_j 2**(field_bits j) as an exactly integral float (float64 when packed64, else float32).
 * Count n_j is drawn from table row level[j] * (n_max + 1) + n_j with word i * n_fields + j; a
 * zero count draws nothing (its row is the point mass at 0). Only elements with some count above
 * `skip_upto` are done (-1: all); elements with a count above n_max (no row) are left unchanged:
 * stats[0] gets how many, stats[1] their largest count (stats[1] = -1: a negative element). */
void sn_add_packed_sums(const int64_t *restrict keys, const int32_t *restrict lut, const int64_t *restrict value_at, int64_t n_rows,
                        int bits, int lut_bits, const void *packed, int packed64, int64_t n_outer,
                        int64_t n_inner, int n_fields, int field_bits, const int64_t *restrict level,
                        int64_t n_max, int64_t skip_upto, uint64_t key, void *err, int err64,
                        int64_t err_stride, double alpha, int threads, int64_t *restrict stats) {
    const sn_table t = {keys, lut, value_at, n_rows, bits, lut_bits};
    const int64_t mask = (field_bits >= 63) ? INT64_MAX : (((int64_t)1 << field_bits) - 1);
    const int64_t n = n_outer * n_inner;
    const int64_t block = 4096;
    int64_t base[64];
    for (int j = 0; j < n_fields && j < 64; j++) base[j] = level[j] * (n_max + 1);
    int64_t bad = 0, over = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : bad) reduction(max : over)
    for (int64_t b0 = 0; b0 < n; b0 += block) {
        const int64_t b1 = b0 + block < n ? b0 + block : n;
        int64_t o = b0 / n_inner, e = b0 - o * n_inner; /* one division per block, not per element */
        for (int64_t i = b0; i < b1; i++, e++) {
            if (e == n_inner) { e = 0; o++; }
            const int64_t p = sn_packed_at(packed, packed64, i);
            if (p < 0) { bad++; over = INT64_MAX; continue; }
            int64_t top = 0;
            for (int j = 0; j < n_fields; j++) {
                const int64_t c = (p >> (field_bits * j)) & mask;
                top = c > top ? c : top;
            }
            if (top <= skip_upto) continue;
            if (top > n_max) { bad++; over = top > over ? top : over; continue; }
            int64_t total = 0;
            const uint64_t w0 = (uint64_t)i * (uint64_t)n_fields;
            for (int j = 0; j < n_fields; j++) {
                const int64_t c = (p >> (field_bits * j)) & mask;
                if (c) total += sn_draw(&t, base[j] + c, sn_word(key, w0 + (uint64_t)j));
            }
            if (total == 0) continue;
            if (err64) ((double *)err)[o * err_stride + e] += alpha * (double)total;
            else ((float *)err)[o * err_stride + e] += (float)(alpha * (double)total);
        }
    }
    stats[0] = bad;
    stats[1] = over == INT64_MAX ? -1 : over;
}
