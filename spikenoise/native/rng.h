/* Counter-based random bits shared by the native kernels.
 *
 * Word k of the stream with key s is splitmix64's output for state s + (k + 1) * gamma: a
 * bijective 64-bit mix of the counter, so any word is computed without its predecessors. That
 * makes a draw a pure function of (key, index): results do not depend on the thread count, and a
 * backward pass can regenerate the exact reads of its forward pass from the key. Keys come from
 * torch's generator, so torch.manual_seed makes every draw reproducible.
 */
#ifndef SPIKENOISE_RNG_H
#define SPIKENOISE_RNG_H
#include <stdint.h>

static inline uint64_t sn_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* word k (0-based) of the stream with key `key` */
static inline uint64_t sn_word(uint64_t key, uint64_t k) {
    return sn_mix64(key + (k + 1) * 0x9E3779B97F4A7C15ULL);
}

#endif
