// Element types of embedding rows and cached K/V, shared by every component (emb, kv, model,
// kernels/): the one Dtype enum, its names and sizes, and the fp16/bf16 <-> fp32 conversions that
// are the reference for every path that converts (host, reference kernels, fast CPU path; the CUDA
// kernels use the device intrinsics with the same rounding).
//
// Header-only and dependency-light (Abseil status types only), so kernels/ and .cu files can use
// it without linking anything.
// Thread-safety: value types and pure functions; safe to use from any thread.
#pragma once

#include <cstdint>
#include <cstring>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace helm {

// Element type. The values are stable: device launchers take them as int32_t.
enum class Dtype : int32_t { kFp32 = 0, kFp16 = 1, kBf16 = 2 };

// "fp32" / "fp16" / "bf16"; InvalidArgument naming the value otherwise.
inline absl::StatusOr<Dtype> ParseDtype(absl::string_view name) {
  if (name == "fp32") return Dtype::kFp32;
  if (name == "fp16") return Dtype::kFp16;
  if (name == "bf16") return Dtype::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype: must be one of {fp32, fp16, bf16}, got '", name, "'"));
}

// "fp32" / "fp16" / "bf16" ("?" for a value outside the enum).
inline const char* DtypeName(Dtype dtype) {
  switch (dtype) {
    case Dtype::kFp32:
      return "fp32";
    case Dtype::kFp16:
      return "fp16";
    case Dtype::kBf16:
      return "bf16";
  }
  return "?";
}

// Bytes of one element.
constexpr int DtypeBytes(Dtype dtype) { return dtype == Dtype::kFp32 ? 4 : 2; }

// IEEE binary16 -> fp32 (exact).
inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    // Subnormal half: renormalise.
    exponent = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// fp32 -> IEEE binary16, round to nearest even (as CUDA's __float2half_rn); NaN stays NaN.
inline uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs < 0x38800000u) {  // subnormal or zero in half
    if (abs < 0x33000000u) return sign;
    const uint32_t exponent = abs >> 23;
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exponent;  // 14..24
    uint32_t result = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (result & 1u))) ++result;
    return static_cast<uint16_t>(sign | result);
  }
  uint32_t result = ((abs >> 13) - (112u << 10));
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (result & 1u))) ++result;
  return static_cast<uint16_t>(sign | result);
}

// bfloat16 -> fp32 (exact).
inline float Bf16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// fp32 -> bfloat16, round to nearest even (as CUDA's __float2bfloat16_rn); NaN stays NaN.
inline uint16_t FloatToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // NaN
  const uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

// Reads element `i` of an array of `dtype` starting at `base` as fp32. `base` may sit at any byte
// offset (host rows are not necessarily aligned).
inline float LoadAsFloat(const void* base, Dtype dtype, int64_t i) {
  const char* p = static_cast<const char*>(base);
  if (dtype == Dtype::kFp32) {
    float f;
    std::memcpy(&f, p + 4 * i, sizeof(f));
    return f;
  }
  uint16_t bits;
  std::memcpy(&bits, p + 2 * i, sizeof(bits));
  return dtype == Dtype::kFp16 ? HalfToFloat(bits) : Bf16ToFloat(bits);
}

// Writes fp32 `value` as element `i` of an array of `dtype` starting at `base` (round to nearest
// even). `base` may sit at any byte offset.
inline void StoreFromFloat(void* base, Dtype dtype, int64_t i, float value) {
  char* p = static_cast<char*>(base);
  if (dtype == Dtype::kFp32) {
    std::memcpy(p + 4 * i, &value, sizeof(value));
    return;
  }
  const uint16_t bits = dtype == Dtype::kFp16 ? FloatToHalf(value) : FloatToBf16(value);
  std::memcpy(p + 2 * i, &bits, sizeof(bits));
}

}  // namespace helm
