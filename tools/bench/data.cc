#include "bench/data.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace ringlink::bench {

// ---- the value generator --------------------------------------------------------------------

namespace {

inline uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

// Largest integer up to which every integer is exact, or the positive range of an integer type.
double exact_limit(DataType t) {
  switch (t) {
    case DataType::Float32: return 16777216.0;
    case DataType::Float64: return 9007199254740992.0;
    case DataType::Float16: return 2048.0;
    case DataType::BFloat16: return 256.0;
    case DataType::Int8: return 127.0;
    case DataType::UInt8: return 255.0;
    case DataType::Int32: return 2147483647.0;
    case DataType::Int64: return 9.2e18;
  }
  return 1.0;
}

// Unit roundoff of the float types.
double unit_roundoff(DataType t) {
  switch (t) {
    case DataType::Float32: return 0x1p-24;
    case DataType::Float64: return 0x1p-53;
    case DataType::Float16: return 0x1p-11;
    case DataType::BFloat16: return 0x1p-8;
    default: return 0;
  }
}

// How values are drawn for one (type, op, nranks).
struct Params {
  enum Kind { Range, Prod } kind = Range;
  int64_t lo = 0, hi = 0;  // inclusive range for Kind::Range
  bool allow_negative = true;
  uint64_t seed = 0;

  Params(DataType type, ReduceOp op, int nranks, uint64_t s) : seed(s) {
    const bool unsigned_type = type == DataType::UInt8;
    allow_negative = !unsigned_type;
    if (op == ReduceOp::Prod) {
      kind = Prod;
      return;
    }
    if (op == ReduceOp::Min || op == ReduceOp::Max) {
      lo = unsigned_type ? 0 : -100;
      hi = unsigned_type ? 200 : 100;
      return;
    }
    // Sum and avg: keep the sum over all ranks inside the exact (or non-wrapping) range.
    const double n = nranks > 0 ? nranks : 1;
    const int64_t amp = static_cast<int64_t>(std::clamp(std::floor(exact_limit(type) / n), 1.0, 8.0));
    lo = unsigned_type ? 0 : -amp;
    hi = amp;
  }

  uint64_t rank_key(int rank) const { return mix(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(rank) + 1); }

  int64_t value(uint64_t key, size_t index) const {
    const uint64_t h = mix(key ^ (static_cast<uint64_t>(index) * 0xD1B54A32D192ED03ull));
    if (kind == Prod) {
      // 1 with probability 5/8, 2 with 2/8, -1 with 1/8 (2 instead of -1 for unsigned types):
      // products stay powers of two, exact until a type overflows (wrap or inf, both defined).
      const unsigned r = static_cast<unsigned>(h >> 61);
      if (r < 5) return 1;
      if (r < 7 || !allow_negative) return 2;
      return -1;
    }
    const uint64_t span = static_cast<uint64_t>(hi - lo + 1);
    return lo + static_cast<int64_t>((h >> 16) % span);
  }
};

template <typename T>
struct Store {
  static void put(void* p, size_t i, int64_t v) { static_cast<T*>(p)[i] = static_cast<T>(v); }
  static double get(const void* p, size_t i) { return static_cast<double>(static_cast<const T*>(p)[i]); }
};
struct HalfStore {
  static void put(void* p, size_t i, int64_t v) { static_cast<uint16_t*>(p)[i] = float_to_half(static_cast<float>(v)); }
  static double get(const void* p, size_t i) { return half_to_float(static_cast<const uint16_t*>(p)[i]); }
};
struct BF16Store {
  static void put(void* p, size_t i, int64_t v) {
    static_cast<uint16_t*>(p)[i] = float_to_bfloat16(static_cast<float>(v));
  }
  static double get(const void* p, size_t i) { return bfloat16_to_float(static_cast<const uint16_t*>(p)[i]); }
};

template <typename F>
decltype(auto) with_store(DataType t, F&& f) {
  switch (t) {
    case DataType::Float32: return f(Store<float>{});
    case DataType::Float64: return f(Store<double>{});
    case DataType::Float16: return f(HalfStore{});
    case DataType::BFloat16: return f(BF16Store{});
    case DataType::Int8: return f(Store<int8_t>{});
    case DataType::UInt8: return f(Store<uint8_t>{});
    case DataType::Int32: return f(Store<int32_t>{});
    case DataType::Int64: return f(Store<int64_t>{});
  }
  return f(Store<float>{});
}

// Rounds an exact value to what `type` stores (integers wrap, floats round to nearest).
double round_to_type(DataType t, double exact, int64_t wrapped_int) {
  switch (t) {
    case DataType::Float32: return static_cast<double>(static_cast<float>(exact));
    case DataType::Float64: return exact;
    case DataType::Float16: return half_to_float(float_to_half(static_cast<float>(exact)));
    case DataType::BFloat16: return bfloat16_to_float(float_to_bfloat16(static_cast<float>(exact)));
    case DataType::Int8: return static_cast<int8_t>(wrapped_int);
    case DataType::UInt8: return static_cast<uint8_t>(wrapped_int);
    case DataType::Int32: return static_cast<int32_t>(wrapped_int);
    case DataType::Int64: return static_cast<double>(wrapped_int);
  }
  return exact;
}

struct Reduced {
  double value;  // rounded to the type
  double tol;
};

// The reduction of element `index` over all ranks, with its tolerance. `keys` are rank_key(r).
Reduced reduce_element(const Params& p, const uint64_t* keys, DataType type, ReduceOp op, int nranks,
                       size_t index) {
  const bool fl = is_floating_point(type);
  double sum = 0, abs_sum = 0, prod = 1;
  uint64_t wsum = 0, wprod = 1;  // wrapping integer arithmetic
  int64_t mn = std::numeric_limits<int64_t>::max(), mx = std::numeric_limits<int64_t>::min();
  for (int r = 0; r < nranks; ++r) {
    const int64_t v = p.value(keys[r], index);
    sum += static_cast<double>(v);
    abs_sum += static_cast<double>(v < 0 ? -v : v);
    prod *= static_cast<double>(v);
    wsum += static_cast<uint64_t>(v);
    wprod *= static_cast<uint64_t>(v);
    mn = std::min(mn, v);
    mx = std::max(mx, v);
  }
  const double u = unit_roundoff(type);
  const double n = nranks;
  switch (op) {
    case ReduceOp::Sum: {
      double tol = 0;
      if (fl && abs_sum > exact_limit(type)) tol = 2 * u * n * abs_sum;
      return {round_to_type(type, sum, static_cast<int64_t>(wsum)), tol};
    }
    case ReduceOp::Prod: return {round_to_type(type, prod, static_cast<int64_t>(wprod)), 0};
    case ReduceOp::Min: return {round_to_type(type, static_cast<double>(mn), mn), 0};
    case ReduceOp::Max: return {round_to_type(type, static_cast<double>(mx), mx), 0};
    case ReduceOp::Avg: {
      if (fl) {
        // Either sum-then-divide or divide-then-sum is correct; both round at most once per term.
        const double tol = 2 * u * (n + 1) * (abs_sum / n + 1);
        return {round_to_type(type, sum / n, 0), tol};
      }
      // Integer avg: the truncated quotient; implementations may round differently by one.
      const int64_t q = static_cast<int64_t>(wsum) / static_cast<int64_t>(nranks);
      return {round_to_type(type, static_cast<double>(q), q), 1};
    }
  }
  return {0, 0};
}

bool matches(double got, const Reduced& want) {
  if (std::isnan(got)) return false;
  if (!std::isfinite(want.value)) return got == want.value;
  return std::fabs(got - want.value) <= want.tol;
}

}  // namespace

void fill_input(void* dst, size_t count, size_t first, DataType type, ReduceOp op, int nranks, int rank,
                uint64_t seed) {
  const Params p(type, op, nranks, seed);
  const uint64_t key = p.rank_key(rank);
  with_store(type, [&](auto s) {
    using S = decltype(s);
    for (size_t i = 0; i < count; ++i) S::put(dst, i, p.value(key, first + i));
  });
}

void poison(void* dst, size_t bytes) { std::memset(dst, 0xA5, bytes); }

double load_value(const void* buf, size_t i, DataType type) {
  return with_store(type, [&](auto s) { return decltype(s)::get(buf, i); });
}

void store_value(void* buf, size_t i, DataType type, double v) {
  switch (type) {
    case DataType::Float32: static_cast<float*>(buf)[i] = static_cast<float>(v); return;
    case DataType::Float64: static_cast<double*>(buf)[i] = v; return;
    case DataType::Float16: static_cast<uint16_t*>(buf)[i] = float_to_half(static_cast<float>(v)); return;
    case DataType::BFloat16: static_cast<uint16_t*>(buf)[i] = float_to_bfloat16(static_cast<float>(v)); return;
    default: break;
  }
  // Integers: through int64 so that out-of-range values wrap instead of being undefined.
  const int64_t w = static_cast<int64_t>(v);
  switch (type) {
    case DataType::Int8: static_cast<int8_t*>(buf)[i] = static_cast<int8_t>(w); return;
    case DataType::UInt8: static_cast<uint8_t*>(buf)[i] = static_cast<uint8_t>(w); return;
    case DataType::Int32: static_cast<int32_t*>(buf)[i] = static_cast<int32_t>(w); return;
    case DataType::Int64: static_cast<int64_t*>(buf)[i] = w; return;
    default: return;
  }
}

int64_t count_wrong(Collective c, const void* result, size_t count, DataType type, ReduceOp op, int nranks,
                    int rank, int root, uint64_t seed) {
  const Params p(type, op, nranks, seed);
  std::vector<uint64_t> keys(static_cast<size_t>(nranks));
  for (int r = 0; r < nranks; ++r) keys[static_cast<size_t>(r)] = p.rank_key(r);

  return with_store(type, [&](auto s) -> int64_t {
    using S = decltype(s);
    int64_t wrong = 0;
    switch (c) {
      case Collective::Reduce:
        if (rank != root) return 0;  // only the root's result is defined
        [[fallthrough]];
      case Collective::AllReduce:
        for (size_t i = 0; i < count; ++i)
          if (!matches(S::get(result, i), reduce_element(p, keys.data(), type, op, nranks, i))) ++wrong;
        break;
      case Collective::ReduceScatter: {
        const size_t base = static_cast<size_t>(rank) * count;
        for (size_t i = 0; i < count; ++i)
          if (!matches(S::get(result, i), reduce_element(p, keys.data(), type, op, nranks, base + i))) ++wrong;
        break;
      }
      case Collective::Broadcast: {
        const uint64_t key = keys[static_cast<size_t>(root)];
        for (size_t i = 0; i < count; ++i)
          if (S::get(result, i) != round_to_type(type, static_cast<double>(p.value(key, i)), p.value(key, i)))
            ++wrong;
        break;
      }
      case Collective::AllGather:
        for (int r = 0; r < nranks; ++r) {
          const uint64_t key = keys[static_cast<size_t>(r)];
          const size_t base = static_cast<size_t>(r) * count;
          for (size_t i = 0; i < count; ++i) {
            const int64_t v = p.value(key, i);
            if (S::get(result, base + i) != round_to_type(type, static_cast<double>(v), v)) ++wrong;
          }
        }
        break;
      case Collective::P2P: break;
    }
    return wrong;
  });
}

int64_t count_wrong_message(const void* result, size_t count, DataType type, int sender, uint64_t seed) {
  // A message checks like a broadcast from `sender` among two ranks.
  return count_wrong(Collective::Broadcast, result, count, type, ReduceOp::Sum, 2, 0, sender, seed);
}

}  // namespace ringlink::bench
