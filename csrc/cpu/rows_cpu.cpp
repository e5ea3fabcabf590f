// Float row loops cloned for AVX2 (A2S_CLONE_AVX2, cpu_common.h: the dynamic
// loader picks the clone the CPU supports, so the default build stays
// baseline x86-64).
// Each clone performs the same IEEE operations in the same order: the avx2
// target enables no FMA and the build has -ffp-contract=off, so results are
// bitwise the same whichever runs; only the vector width (and AVX2's
// gathers) differ.
#include "cpu_common.h"

namespace a2s {

A2S_CLONE_AVX2 void resize_row_float(
    const float* __restrict src, float* __restrict dst, const int* __restrict i0, const int* __restrict i1,
    const float* __restrict l0, const float* __restrict l1, int W) {
  for (int x = 0; x < W; ++x) dst[x] = l0[x] * src[i0[x]] + l1[x] * src[i1[x]];
}

}  // namespace a2s
