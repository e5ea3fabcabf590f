// exp for the softmax of scale_merge, identical on every device.
//
// The C library's expf/exp and CUDA's differ in the last bit (CUDA documents
// up to 2 ulp for expf, 1 ulp for exp), so a kernel that calls them cannot
// give the same attention weights on the CPU and the GPU. This exp uses only
// IEEE +, -, *, conversions and exact powers of two (all correctly rounded on both
// devices, given nvcc --fmad=false and a host build with -ffp-contract=off),
// so it rounds identically everywhere. It is evaluated in double:
//   k = nearest integer to x / ln2, r = x - k ln2 (ln2 split in two parts so
//   that k * ln2_hi is exact), exp(r) by its Taylor series to degree 13 on
//   |r| <= ln2 / 2 (truncation < 5e-18 relative), exp(x) = 2^k exp(r).
// For float the double result (error ~1e-14 relative) is rounded once to
// float: the correctly rounded expf except when exp(x) lies that close to a
// midpoint between two floats (1 of the 1.12e9 floats in [-104, 0]), which
// also keeps the kernels bit for bit equal to Caffe's glibc expf on the
// golden nets.
// tests/test_exp_math.py checks the bounds against numpy.
#pragma once

#include "macros.h"

namespace a2s {

// ln2 = kLn2Hi + kLn2Lo; kLn2Hi has 29 significant bits, so k * kLn2Hi is
// exact for |k| < 2^24.
constexpr double kLn2Hi = 0.6931471806019545;
constexpr double kLn2Lo = -4.2009150726810846e-11;
constexpr double kInvLn2 = 1.4426950408889634;
// Beyond these exp overflows / underflows double (and float a fortiori).
constexpr double kExpOverflow = 709.79;
constexpr double kExpUnderflow = -745.2;

// exp(r) - 1 - r for |r| <= ln2/2 (with rounding slack), as r^2 * q(r):
// Taylor coefficients 1/k!, k = 2..13, Horner form.
A2S_INLINE double expm1_tail(double r) {
  double q = 1.6059043836821613e-10;  // 1/13!
  q = q * r + 2.08767569878681e-09;   // 1/12!
  q = q * r + 2.505210838544172e-08;  // 1/11!
  q = q * r + 2.755731922398589e-07;  // 1/10!
  q = q * r + 2.7557319223985893e-06;
  q = q * r + 2.48015873015873e-05;
  q = q * r + 0.0001984126984126984;
  q = q * r + 0.001388888888888889;
  q = q * r + 0.008333333333333333;
  q = q * r + 0.041666666666666664;
  q = q * r + 0.16666666666666666;
  q = q * r + 0.5;
  return (r * r) * q;
}

// 2^k for -1022 <= k <= 1023, built from its bits (exact; far cheaper than
// the library's ldexp, which handles every special case).
A2S_INLINE double pow2i(int k) {
  const uint64_t bits = static_cast<uint64_t>(k + 1023) << 52;
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(bits));
#else
  double d;
  __builtin_memcpy(&d, &bits, sizeof d);
  return d;
#endif
}

A2S_INLINE double exp_portable(double x) {
  if (x != x) return x;                     // NaN
  if (x > kExpOverflow) return x * 1e308;   // +inf (with the overflow flag)
  if (x < kExpUnderflow) return 0.0;        // also exp(-inf)
  const double t = x * kInvLn2;
  // Round to nearest by truncation (exact); any k within 1 of x/ln2 would do,
  // the tail's degree covers |r| up to ln2/2 plus rounding.
  const int k = static_cast<int>(t < 0.0 ? t - 0.5 : t + 0.5);
  const double kd = static_cast<double>(k);
  const double r = (x - kd * kLn2Hi) - kd * kLn2Lo;
  // 1 + (r + tail): the two small terms are added first, so the only
  // rounding at the size of the result is the last addition.
  const double e = 1.0 + (r + expm1_tail(r));
  // e * 2^k: exact while normal; outside [-1022, 1023] in two factors, each
  // a power of two, so only the last product rounds (overflow to inf, or a
  // subnormal result rounded once).
  if (k >= -1022 && k <= 1023) return e * pow2i(k);
  const int k1 = k / 2;
  return (e * pow2i(k1)) * pow2i(k - k1);
}

// float: the same reduction, with a degree-11 tail in Estrin's form (short
// dependency chains: this runs once per scale and pixel in the softmax).
// Truncation < 7e-15 relative, far below float's half ulp (3e-8), and every
// k here keeps 2^k and the product normal in double: one rounding, to float.
//
// Split in three so that the CPU's softmax loops vectorise it (a loop with
// the special cases as branches does not: GCC keeps them as control flow):
// exp_float_arg clamps the argument to [-104, 89] (NaN to -104), the core
// computes on the clamped value with no branch, and exp_portable puts NaN
// back. The clamp changes no result: below -104 the old early return gave
// 0, and exp(-104) = 6.8e-46 is below half the smallest subnormal (7.0e-46),
// so it rounds to +0 too; above 89 it gave +inf, and exp(89) = 4.5e38
// exceeds FLT_MAX, so it rounds to +inf too.
constexpr float kExpFloatLo = -104.0f;
constexpr float kExpFloatHi = 89.0f;

A2S_INLINE float exp_float_arg(float x) {
  const float lo = x >= kExpFloatLo ? x : kExpFloatLo;  // NaN compares false: -104
  return lo <= kExpFloatHi ? lo : kExpFloatHi;
}

// exp of a value already clamped by exp_float_arg. The round-half-away k
// adds a selected +-0.5 (a select of constants, not of two computations, so
// it stays branch-free); 2^k is built from the bits through a 32-bit
// unsigned (k + 1023 > 0 here), which the vectoriser handles.
A2S_INLINE float exp_float_clamped(float xc) {
  const double x = static_cast<double>(xc);
  const double t = x * kInvLn2;
  const int k = static_cast<int>(t + (t < 0.0 ? -0.5 : 0.5));
  const double kd = static_cast<double>(k);
  const double r = (x - kd * kLn2Hi) - kd * kLn2Lo;
  const double r2 = r * r, r4 = r2 * r2;
  const double a0 = 0.5 + 0.16666666666666666 * r;
  const double a1 = 0.041666666666666664 + 0.008333333333333333 * r;
  const double a2 = 0.001388888888888889 + 0.0001984126984126984 * r;
  const double a3 = 2.48015873015873e-05 + 2.7557319223985893e-06 * r;
  const double a4 = 2.755731922398589e-07 + 2.505210838544172e-08 * r;
  const double q = (a0 + a1 * r2) + (a2 + a3 * r2) * r4 + a4 * (r4 * r4);
  const double e = 1.0 + (r + r2 * q);
  const uint64_t bits = static_cast<uint64_t>(static_cast<uint32_t>(k + 1023)) << 52;
#if defined(__CUDA_ARCH__)
  const double p = __longlong_as_double(static_cast<long long>(bits));
#else
  double p;
  __builtin_memcpy(&p, &bits, sizeof p);
#endif
  return static_cast<float>(e * p);
}

A2S_INLINE float exp_portable(float xf) {
  if (xf != xf) return xf;
  return exp_float_clamped(exp_float_arg(xf));
}

}  // namespace a2s
