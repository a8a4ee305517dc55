#include "models/kernels/packed_linear_int8.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "models/kernels/kernel_threads.h"
#include "models/kernels/packed_bf16_kernels.h"
#include "models/kernels/packed_int8_vnni.h"
#include "models/kernels/packed_linear_bf16.h"
#include "models/kernels/panel_tiles.h"
#include "models/kernels/simd_vec8.h"
#include "models/runtime.h"

namespace vitrine::models {
namespace {

using simd::Lanes;

constexpr int64_t kPanel = simd::kPanelLanes;  // output features per panel

// Input features per pass of the widening kernel, as packed_linear's.
constexpr int64_t kPass = 512;

// Bytes fetched ahead of use in a panel: 24 lines, as packed_linear's
// (a panel row is 16 bytes here, so that is 96 input features ahead).
constexpr int64_t kPrefetchBytes = 24 * 64;

// Bytes of bf16 pairs the dot build turns at a time: the panels' share
// stays in L2 while every row goes by.
constexpr int64_t kTurnedBytes = 256 * 1024;

int64_t panel_count(int64_t out_features) {
  return (out_features + kPanel - 1) / kPanel;
}

// One product's operands: x rows of stride in, q panels [panels, in, 16],
// the 16 scales of each panel, y rows of stride out.
struct Int8Operands {
  const float* x = nullptr;
  const int8_t* q = nullptr;
  const float* scales = nullptr;
  float* y = nullptr;
  int64_t in = 0, out = 0;
};

// L int8 weights at p widened to L floats (exact): vpmovsxbd and
// vcvtdq2ps in the AVX-512 and AVX2 builds (GCC's __builtin_convertvector
// from bytes goes lane by lane through general registers), plain C in SSE,
// whose speed only matters on CPUs without AVX2. Not always_inline: target
// intrinsics; the entry points (flatten) inline them.
template <int L>
typename Lanes<L>::F widen_bytes(const int8_t* p);

template <>
__attribute__((target("avx512f,avx512vl,avx512bw,avx2,fma"))) Lanes<16>::F widen_bytes<16>(
    const int8_t* p) {
  return (Lanes<16>::F)_mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

template <>
__attribute__((target("avx2,fma"))) Lanes<8>::F widen_bytes<8>(const int8_t* p) {
  return (Lanes<8>::F)_mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

template <>
Lanes<4>::F widen_bytes<4>(const int8_t* p) {
  return Lanes<4>::F{static_cast<float>(p[0]), static_cast<float>(p[1]), static_cast<float>(p[2]),
                     static_cast<float>(p[3])};
}

// Widen: panels [p0, p0 + P) × rows [r0, r0 + R) over input features [k0,
// k1): per feature, P panel rows of 16 bytes widened to float32 (exact) and
// R broadcasts, P·R multiply-adds per vector; the sums times the panels'
// scales (a pass's partial sums are scaled before they are added into y).
template <int L>
struct WidenTile {
  Int8Operands op;

  template <int P, int R>
  __attribute__((always_inline)) void run(int64_t p0, int64_t r0, int64_t k0, int64_t k1) const {
    using V = Lanes<L>;
    constexpr int N = V::kPerPanelRow;
    typename V::F acc[P][N][R] = {};
    const float* xr = op.x + r0 * op.in;
    const int8_t* w = op.q + p0 * op.in * kPanel;
    for (int64_t k = k0; k < k1; ++k) {
      typename V::F wv[P][N];
      for (int p = 0; p < P; ++p) {
        const int8_t* row = w + (p * op.in + k) * kPanel;
        if ((k & 3) == 0) __builtin_prefetch(row + kPrefetchBytes);
        for (int n = 0; n < N; ++n) wv[p][n] = widen_bytes<L>(row + n * L);
      }
      for (int r = 0; r < R; ++r) {
        const float xv = xr[r * op.in + k];
        for (int p = 0; p < P; ++p) {
          for (int n = 0; n < N; ++n) acc[p][n][r] += wv[p][n] * xv;
        }
      }
    }
    for (int p = 0; p < P; ++p) {
      for (int n = 0; n < N; ++n) {
        const typename V::F s = V::load(op.scales + (p0 + p) * kPanel + n * L);
        for (int r = 0; r < R; ++r) acc[p][n][r] *= s;
      }
    }
    simd::store_tile<L, P, R>(acc, op.y, op.out, p0, r0, k0 == 0);
  }
};

// The tiles fill each build's registers as packed_linear_bf16's widening
// ones do: AVX-512 3 × 8 accumulators, 3 widened panel rows, a broadcast;
// AVX2 1 × 4 (a panel row is two registers); SSE 1 × 2.
constexpr int kAvx512Panels = 3, kAvx512Rows = 8;
constexpr int kAvx2Panels = 1, kAvx2Rows = 4;
constexpr int kBaselinePanels = 1, kBaselineRows = 2;

__attribute__((target("avx512f,avx512vl,avx512bw,avx2,fma"), flatten)) void widen_avx512(
    const Int8Operands& op, int64_t rows, int64_t first, int64_t last) {
  simd::panels_times_rows<kAvx512Panels, kAvx512Rows>(WidenTile<16>{op}, rows, first, last, op.in,
                                                      kPass);
}

VITRINE_AVX2 void widen_avx2(const Int8Operands& op, int64_t rows, int64_t first, int64_t last) {
  simd::panels_times_rows<kAvx2Panels, kAvx2Rows>(WidenTile<8>{op}, rows, first, last, op.in,
                                                  kPass);
}

__attribute__((flatten)) void widen_baseline(const Int8Operands& op, int64_t rows, int64_t first,
                                             int64_t last) {
  simd::panels_times_rows<kBaselinePanels, kBaselineRows>(WidenTile<4>{op}, rows, first, last,
                                                          op.in, kPass);
}

// Panels [first, last) of q turned into bfloat16 pairs, [n, in2, 16, 2] as
// pack_weight_bf16 lays them out (zero past an odd in): int8 values are
// exact in bfloat16, the upper half of their exact float32.
__attribute__((target("avx512f,avx512vl,avx512bw,avx2,fma"), flatten)) void turn_panels(
    const Int8Operands& op, int64_t first, int64_t last, uint32_t* pairs) {
  using V = Lanes<16>;
  const int64_t in2 = (op.in + 1) / 2;
  const int8_t zero[kPanel] = {};
  for (int64_t p = first; p < last; ++p) {
    const int8_t* panel = op.q + p * op.in * kPanel;
    uint32_t* out = pairs + (p - first) * in2 * kPanel;
    for (int64_t k2 = 0; k2 < in2; ++k2) {
      const int8_t* odd = 2 * k2 + 1 < op.in ? panel + (2 * k2 + 1) * kPanel : zero;
      const V::U lo = __builtin_bit_cast(V::U, widen_bytes<16>(panel + 2 * k2 * kPanel));
      const V::U hi = __builtin_bit_cast(V::U, widen_bytes<16>(odd));
      *reinterpret_cast<V::U*>(out + k2 * kPanel) = (lo >> 16) | (hi & 0xffff0000u);
    }
  }
}

// The bf16-dot build on panels [first, last): `chunk` panels at a time
// turned into pairs and multiplied by every row (xb: the rows rounded to
// bf16 pairs), then scaled.
void dot_panels(const Int8Operands& op, const uint32_t* xb, int64_t rows, int64_t first,
                int64_t last, int64_t chunk) {
  const int64_t in2 = (op.in + 1) / 2;
  thread_local std::vector<uint32_t> buffer;
  buffer.resize(static_cast<size_t>(chunk * in2 * kPanel));
  const bf16_kernels::ForwardBuild dot = bf16_kernels::forward_build(Bf16Path::kDotAvx512Bf16);
  for (int64_t p0 = first; p0 < last; p0 += chunk) {
    const int64_t n = std::min(chunk, last - p0);
    turn_panels(op, p0, p0 + n, buffer.data());
    bf16_kernels::ForwardOperands turned;
    turned.xb = xb;
    turned.pairs = buffer.data();
    turned.y = op.y + p0 * kPanel;
    turned.in2 = in2;
    turned.out = std::min(op.out - p0 * kPanel, n * kPanel);
    turned.y_stride = op.out;
    dot.run(turned, rows, 0, n);
    const float* s = op.scales + p0 * kPanel;
    for (int64_t r = 0; r < rows; ++r) {
      float* y = op.y + r * op.out + p0 * kPanel;
      for (int64_t j = 0; j < turned.out; ++j) y[j] *= s[j];
    }
  }
}

Int8Path resolve_build(Int8Path path, int64_t rows) {
  if (path == Int8Path::kAuto) {
    if (rows >= kInt8DotRows && int8_path_available(Int8Path::kDotAvx512Bf16)) {
      return Int8Path::kDotAvx512Bf16;
    }
    if (rows < kInt8DotRows && int8_path_available(Int8Path::kVnniAvx512)) {
      return Int8Path::kVnniAvx512;
    }
    return cpu_has_avx512() ? Int8Path::kWidenAvx512
           : cpu_has_avx2() ? Int8Path::kWidenAvx2
                            : Int8Path::kWidenBaseline;
  }
  if (!int8_path_available(path)) {
    throw std::invalid_argument(
        fmt::format("packed_linear_int8: this CPU does not run the {} build (or VITRINE_NO_AVX2 / "
                    "VITRINE_NO_AVX512 / VITRINE_NO_AVX512_BF16 turned it off); use auto",
                    int8_path_name(path)));
  }
  return path;
}

// The VNNI build: the rows quantized to int16 pairs on the calling thread
// (a decode step's few rows take microseconds), then the panels split over
// the kernel threads in whole tiles.
void vnni_linear(const Int8Operands& op, int64_t rows, int64_t panels) {
  namespace k = int8_kernels;
  const int64_t in2 = (op.in + 1) / 2;
  thread_local std::vector<uint32_t> pairs;
  thread_local std::vector<float> x_scales;
  pairs.resize(static_cast<size_t>(rows * in2));
  x_scales.resize(static_cast<size_t>(rows));
  k::quantize_rows_int16(op.x, op.in, 0, rows, pairs.data(), in2, x_scales.data());
  const k::VnniOperands vnni{pairs.data(), x_scales.data(), op.q, op.scales,
                             op.y,         op.in,           in2,  op.out};
  const int64_t groups = (panels + k::kVnniPanels - 1) / k::kVnniPanels;
  const int64_t work = k::kVnniPanels * kPanel * rows * op.in;
  kernel_parallel_for(0, groups, simd::grain_for(work), [&](int64_t begin, int64_t end) {
    k::vnni_panels(vnni, rows, begin * k::kVnniPanels, std::min(end * k::kVnniPanels, panels));
  });
}

// std::round (halves away from zero) clamped to [-127, 127], inline: the
// library call was half of a quantizing load. Exact: `v - whole` is exact
// for |v| < 2^23, and larger values clamp anyway.
inline int8_t round_to_int8(float v) {
  v = std::clamp(v, -127.0f, 127.0f);
  int whole = static_cast<int>(v);  // toward zero
  const float rest = v - static_cast<float>(whole);
  whole += (rest >= 0.5f) - (rest <= -0.5f);
  return static_cast<int8_t>(whole);
}

// [out, in] weights in their stored type (`value` makes a float32 of one)
// -> q and scales, panels [begin, end). No float32 copy of the weight is
// made: a 7B model's would churn 30 GB through the allocator while it
// loads. Returns false when a weight is not finite.
template <typename Source, typename Value>
bool quantize_panels(const Source* w, int64_t out, int64_t in, int64_t begin, int64_t end,
                     int8_t* q, float* scales, Value value) {
  // A panel's rows go through `row_f` (one row in float32) and `rows_q`
  // row by row (contiguous, so the compiler vectorizes the division and the
  // rounding), then are interleaved into the panel front to back.
  std::vector<float> row_f(static_cast<size_t>(in));
  std::vector<int8_t> rows_q(static_cast<size_t>(kPanel * in));
  bool finite = true;
  for (int64_t p = begin; p < end; ++p) {
    int8_t* panel = q + p * in * kPanel;
    const int64_t rows = std::min<int64_t>(kPanel, out - p * kPanel);
    for (int64_t j = 0; j < kPanel; ++j) {
      int8_t* row_q = rows_q.data() + j * in;
      scales[p * kPanel + j] = 0;
      std::fill(row_q, row_q + in, int8_t{0});
      if (j >= rows) continue;
      const Source* row = w + (p * kPanel + j) * in;
      float top = 0;
      bool row_finite = true;
      for (int64_t k = 0; k < in; ++k) {
        const float v = value(row[k]);
        row_f[k] = v;
        row_finite &= std::isfinite(v);
        top = std::max(top, std::fabs(v));
      }
      finite &= row_finite;
      const float scale = top / 127.0f;
      if (!row_finite || scale == 0) continue;
      scales[p * kPanel + j] = scale;
      for (int64_t k = 0; k < in; ++k) row_q[k] = round_to_int8(row_f[k] / scale);
    }
    for (int64_t k = 0; k < in; ++k) {
      for (int64_t j = 0; j < kPanel; ++j) panel[k * kPanel + j] = rows_q[j * in + k];
    }
  }
  return finite;
}

at::Tensor storage_or_own(const at::Tensor& storage, int64_t numel, at::ScalarType dtype,
                          const char* what) {
  if (!storage.defined()) return at::empty({numel}, at::TensorOptions().dtype(dtype));
  if (storage.scalar_type() != dtype || !storage.device().is_cpu() || !storage.is_contiguous() ||
      storage.numel() < numel) {
    throw std::invalid_argument(fmt::format(
        "quantize_weight_int8: {} storage must be a contiguous {} CPU tensor of at least {} "
        "elements, got {} {}",
        what, c10::toString(dtype), numel, c10::str(storage.sizes()),
        c10::toString(storage.scalar_type())));
  }
  return storage.view({-1}).narrow(0, 0, numel);
}

}  // namespace

std::string_view int8_path_name(Int8Path path) {
  switch (path) {
    case Int8Path::kAuto:
      return "auto";
    case Int8Path::kDotAvx512Bf16:
      return "dot-avx512bf16";
    case Int8Path::kVnniAvx512:
      return "vnni-avx512";
    case Int8Path::kWidenAvx512:
      return "widen-avx512";
    case Int8Path::kWidenAvx2:
      return "widen-avx2";
    case Int8Path::kWidenBaseline:
      return "widen-baseline";
  }
  return "unknown";
}

bool int8_path_available(Int8Path path) {
  switch (path) {
    case Int8Path::kDotAvx512Bf16:
      return cpu_has_avx512_bf16();
    case Int8Path::kVnniAvx512:
      return int8_kernels::cpu_has_avx512_vnni();
    case Int8Path::kWidenAvx512:
      return cpu_has_avx512();
    case Int8Path::kWidenAvx2:
      return cpu_has_avx2();
    default:
      return true;
  }
}

bool packing_int8_applies(const at::Tensor& w) {
  return packing_bf16_applies(w);
}

int64_t packed_int8_bytes(int64_t out_features, int64_t in_features) {
  return panel_count(out_features) * in_features * kPanel;
}

int64_t packed_int8_scale_count(int64_t out_features) {
  return panel_count(out_features) * kPanel;
}

PackedWeightInt8 quantize_weight_int8(const at::Tensor& w, const at::Tensor& panels_storage,
                                      const at::Tensor& scales_storage) {
  if (!packing_int8_applies(w)) {
    throw std::invalid_argument(fmt::format(
        "quantize_weight_int8: expected a 2-D float32, bfloat16 or float16 CPU weight, got {} {}",
        w.defined() ? c10::str(w.sizes()) : "undefined",
        w.defined() ? c10::toString(w.scalar_type()) : ""));
  }
  const int64_t out = w.size(0), in = w.size(1), panels = panel_count(out);
  const at::Tensor wc = w.contiguous();  // a view of a mapped checkpoint's tensor stays one
  PackedWeightInt8 packed{
      storage_or_own(panels_storage, packed_int8_bytes(out, in), at::kChar, "panels"),
      storage_or_own(scales_storage, packed_int8_scale_count(out), at::kFloat, "scales"), out, in};
  packed.panels = packed.panels.view({panels, in, kPanel});
  int8_t* q = packed.panels.data_ptr<int8_t>();
  float* scales = packed.scales.data_ptr<float>();
  std::atomic<bool> finite{true};
  kernel_parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
    bool ok = true;
    if (wc.scalar_type() == at::kFloat) {
      ok = quantize_panels(wc.data_ptr<float>(), out, in, begin, end, q, scales,
                           [](float v) { return v; });
    } else if (wc.scalar_type() == at::kHalf) {
      ok = quantize_panels(wc.data_ptr<at::Half>(), out, in, begin, end, q, scales,
                           [](at::Half h) { return static_cast<float>(h); });
    } else {
      ok = quantize_panels(reinterpret_cast<const uint16_t*>(wc.data_ptr<at::BFloat16>()), out, in,
                           begin, end, q, scales, float_from_bf16);
    }
    if (!ok) finite.store(false);
  });
  if (!finite.load()) {
    throw std::invalid_argument(
        fmt::format("quantize_weight_int8: the [{}, {}] weight holds non-finite values", out, in));
  }
  return packed;
}

at::Tensor dequantize_weight_int8(const PackedWeightInt8& w) {
  const at::Tensor q = w.panels.transpose(1, 2).reshape({-1, w.in_features});  // [16·panels, in]
  return (q.to(at::kFloat) * w.scales.view({-1, 1}))
      .narrow(0, 0, w.out_features)
      .contiguous();  // [out, in]
}

at::Tensor packed_linear_int8(const at::Tensor& x, const PackedWeightInt8& w,
                              const at::Tensor& bias, Int8Path path) {
  if (!w.defined()) throw std::invalid_argument("packed_linear_int8: the weight is not packed");
  if (!x.defined() || !x.device().is_cpu() || x.scalar_type() != at::kFloat || x.dim() < 1 ||
      x.size(-1) != w.in_features) {
    throw std::invalid_argument(fmt::format(
        "packed_linear_int8: input {} {} for a weight [{}, {}] (float32 CPU, last dimension {})",
        x.defined() ? c10::str(x.sizes()) : "undefined",
        x.defined() ? c10::toString(x.scalar_type()) : "", w.out_features, w.in_features,
        w.in_features));
  }
  if (bias.defined() && (bias.numel() != w.out_features || bias.scalar_type() != at::kFloat)) {
    throw std::invalid_argument(
        fmt::format("packed_linear_int8: bias {} {} for a weight [{}, {}]", c10::str(bias.sizes()),
                    c10::toString(bias.scalar_type()), w.out_features, w.in_features));
  }
  const at::Tensor xc = x.contiguous();
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = w.out_features;
  at::Tensor y = at::empty(shape, x.options());  // [..., out]
  const int64_t rows = w.in_features == 0 ? 0 : xc.numel() / w.in_features;
  if (w.in_features == 0) y.zero_();  // empty sums
  if (rows == 0 || w.out_features == 0) return bias.defined() ? y.add_(bias) : y;
  const Int8Path build = resolve_build(path, rows);
  const Int8Operands op{xc.data_ptr<float>(),
                        w.panels.data_ptr<int8_t>(),
                        w.scales.data_ptr<float>(),
                        y.data_ptr<float>(),
                        w.in_features,
                        w.out_features};
  const int64_t panels = panel_count(w.out_features);
  if (build == Int8Path::kDotAvx512Bf16) {
    const int64_t in2 = (w.in_features + 1) / 2;
    at::Tensor xb = at::empty({rows, 2 * in2}, x.options().dtype(at::kBFloat16));  // [rows, in2, 2]
    uint16_t* halves = reinterpret_cast<uint16_t*>(xb.data_ptr<at::BFloat16>());
    kernel_parallel_for(0, rows, simd::grain_for(w.in_features), [&](int64_t begin, int64_t end) {
      bf16_kernels::round_rows_to_bf16(op.x, w.in_features, begin, end, halves, in2);
    });
    // Whole groups of 3 panels (the tile's), as many as fill the buffer.
    const int64_t chunk = std::max<int64_t>(
        kAvx512Panels, kTurnedBytes / (in2 * kPanel * 4) / kAvx512Panels * kAvx512Panels);
    const int64_t groups = (panels + kAvx512Panels - 1) / kAvx512Panels;
    const int64_t work = kAvx512Panels * kPanel * rows * w.in_features;
    kernel_parallel_for(0, groups, simd::grain_for(work), [&](int64_t begin, int64_t end) {
      dot_panels(op, reinterpret_cast<const uint32_t*>(halves), rows, begin * kAvx512Panels,
                 std::min(end * kAvx512Panels, panels), chunk);
    });
  } else if (build == Int8Path::kVnniAvx512) {
    vnni_linear(op, rows, panels);
  } else {
    const int64_t group = build == Int8Path::kWidenAvx512 ? kAvx512Panels : 1;
    const int64_t groups = (panels + group - 1) / group;
    const int64_t work = group * kPanel * rows * w.in_features;
    kernel_parallel_for(0, groups, simd::grain_for(work), [&](int64_t begin, int64_t end) {
      const int64_t first = begin * group, last = std::min(end * group, panels);
      if (build == Int8Path::kWidenAvx512) {
        widen_avx512(op, rows, first, last);
      } else if (build == Int8Path::kWidenAvx2) {
        widen_avx2(op, rows, first, last);
      } else {
        widen_baseline(op, rows, first, last);
      }
    });
  }
  if (bias.defined()) y.add_(bias);
  return y;
}

}  // namespace vitrine::models
