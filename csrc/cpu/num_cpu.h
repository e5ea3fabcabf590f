// CPU value traits for the reduced-precision types: accumulate in float.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../macros.h"

namespace a2s {

template <>
struct Num<c10::Half> {
  using acc = float;
  static inline float load(c10::Half v) { return static_cast<float>(v); }
  static inline c10::Half store(float v) { return c10::Half(v); }
};

template <>
struct Num<c10::BFloat16> {
  using acc = float;
  static inline float load(c10::BFloat16 v) { return static_cast<float>(v); }
  static inline c10::BFloat16 store(float v) { return c10::BFloat16(v); }
};

}  // namespace a2s
