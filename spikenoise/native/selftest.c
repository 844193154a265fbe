/* A trivial kernel the loader's tests build and call: word k of a stream, and the build flags. */
#include <stdint.h>
#include "rng.h"

int sn_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

void sn_words(uint64_t key, int64_t n, uint64_t *out) {
    for (int64_t k = 0; k < n; k++) out[k] = sn_word(key, (uint64_t)k);
}
