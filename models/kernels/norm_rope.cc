#include "models/kernels/norm_rope.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cmath>
#include <stdexcept>

#include "models/kernels/kernel_threads.h"
#include "models/kernels/lanes_exp.h"
#include "models/kernels/simd_vec8.h"
#include "models/runtime.h"

namespace vitrine::models {
namespace {

using simd::Vec8;

// Σ a[j]·b[j]·c[j]·scale over n values (c = nullptr: Σ a[j]·b[j]), eight
// lanes at a time.
__attribute__((always_inline)) inline float sum_products(const float* a, const float* b,
                                                         const float* c, float scale, int64_t n) {
  Vec8 acc = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const Vec8 ab = simd::load8(a + j) * simd::load8(b + j);
    acc += c == nullptr ? ab : ab * (simd::load8(c + j) * scale);
  }
  float sum = simd::sum8(acc);
  for (; j < n; ++j) sum += c == nullptr ? a[j] * b[j] : a[j] * b[j] * (c[j] * scale);
  return sum;
}

struct NormOperands {
  const float* x = nullptr;  // [rows, n]
  const float* w = nullptr;  // [n]
  const float* dy = nullptr;
  float* y = nullptr;  // forward: y; backward: dx
  float* s = nullptr;  // [rows]
  int64_t n = 0;
  float eps = 0;
};

__attribute__((always_inline)) inline void norm_forward(const NormOperands& op, int64_t begin,
                                                        int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float* x = op.x + r * op.n;
    float* y = op.y + r * op.n;
    const float s =
        1.0f / std::sqrt(sum_products(x, x, nullptr, 0, op.n) / static_cast<float>(op.n) + op.eps);
    op.s[r] = s;
    for (int64_t j = 0; j < op.n; ++j) y[j] = op.w[j] * (x[j] * s);
  }
}

// dn = dy·w, n = x·s: dx = s·(dn − n·mean(dn·n)).
__attribute__((always_inline)) inline void norm_backward(const NormOperands& op, int64_t begin,
                                                         int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float *x = op.x + r * op.n, *dy = op.dy + r * op.n;
    float* dx = op.y + r * op.n;
    const float s = op.s[r];
    const float inner = sum_products(dy, op.w, x, s, op.n) / static_cast<float>(op.n);
    for (int64_t j = 0; j < op.n; ++j) dx[j] = s * (dy[j] * op.w[j] - (x[j] * s) * inner);
  }
}

VITRINE_AVX2 void norm_forward_avx2(const NormOperands& op, int64_t begin, int64_t end) {
  norm_forward(op, begin, end);
}
__attribute__((flatten)) void norm_forward_baseline(const NormOperands& op, int64_t begin,
                                                    int64_t end) {
  norm_forward(op, begin, end);
}
VITRINE_AVX2 void norm_backward_avx2(const NormOperands& op, int64_t begin, int64_t end) {
  norm_backward(op, begin, end);
}
__attribute__((flatten)) void norm_backward_baseline(const NormOperands& op, int64_t begin,
                                                     int64_t end) {
  norm_backward(op, begin, end);
}

struct RopeOperands {
  const float* x = nullptr;    // [b, heads, t, d] by x_stride
  const float* cos = nullptr;  // [b, t, d]
  const float* sin = nullptr;
  float* y = nullptr;  // [b, heads, t, d] contiguous
  int64_t heads = 0, t = 0, d = 0;
  int64_t x_stride[3] = {};
};

// Rows (b, head, position) [begin, end), flattened.
__attribute__((always_inline)) inline void rope_span(const RopeOperands& op, bool backward,
                                                     int64_t begin, int64_t end) {
  const int64_t half = op.d / 2;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t p = row % op.t, h = (row / op.t) % op.heads, b = row / (op.t * op.heads);
    const float* x = op.x + b * op.x_stride[0] + h * op.x_stride[1] + p * op.x_stride[2];
    const float* c = op.cos + (b * op.t + p) * op.d;
    const float* sn = op.sin + (b * op.t + p) * op.d;
    float* y = op.y + row * op.d;
    if (!backward) {  // x·cos + (−x₂, x₁)·sin
      for (int64_t i = 0; i < half; ++i) y[i] = x[i] * c[i] + -x[i + half] * sn[i];
      for (int64_t i = half; i < op.d; ++i) y[i] = x[i] * c[i] + x[i - half] * sn[i];
    } else {  // g·cos − (−(g·sin)₂, (g·sin)₁)
      for (int64_t i = 0; i < half; ++i) y[i] = x[i] * c[i] - -(x[i + half] * sn[i + half]);
      for (int64_t i = half; i < op.d; ++i) y[i] = x[i] * c[i] - x[i - half] * sn[i - half];
    }
  }
}

VITRINE_AVX2 void rope_avx2(const RopeOperands& op, bool backward, int64_t begin, int64_t end) {
  rope_span(op, backward, begin, end);
}
__attribute__((flatten)) void rope_baseline(const RopeOperands& op, bool backward, int64_t begin,
                                            int64_t end) {
  rope_span(op, backward, begin, end);
}

struct SwigluOperands {
  const float *gate = nullptr, *up = nullptr, *dy = nullptr;
  float *d_gate = nullptr, *d_up = nullptr;
};

// Elements [begin, end): with σ = σ(g), d_gate = dy·u·σ·(1 + g·(1 − σ))
// (silu's derivative, as ATen's silu_backward) and d_up = dy·g·σ.
template <int L>
__attribute__((always_inline)) inline void swiglu_backward_span(const SwigluOperands& op,
                                                                int64_t begin, int64_t end) {
  using V = simd::Lanes<L>;
  int64_t i = begin;
  for (; i + L <= end; i += L) {
    const typename V::F g = V::load(op.gate + i), u = V::load(op.up + i), dy = V::load(op.dy + i);
    const typename V::F sigmoid = 1.0f / (1.0f + simd::exp_lanes<L>(-g));
    V::store(op.d_gate + i, dy * u * (sigmoid * (1.0f + g * (1.0f - sigmoid))));
    V::store(op.d_up + i, dy * (g * sigmoid));
  }
  for (; i < end; ++i) {
    const float g = op.gate[i], sigmoid = 1.0f / (1.0f + std::exp(-g));
    op.d_gate[i] = op.dy[i] * op.up[i] * (sigmoid * (1.0f + g * (1.0f - sigmoid)));
    op.d_up[i] = op.dy[i] * (g * sigmoid);
  }
}

VITRINE_AVX2 void swiglu_backward_avx2(const SwigluOperands& op, int64_t begin, int64_t end) {
  swiglu_backward_span<8>(op, begin, end);
}
__attribute__((flatten)) void swiglu_backward_baseline(const SwigluOperands& op, int64_t begin,
                                                       int64_t end) {
  swiglu_backward_span<4>(op, begin, end);
}

void check_float_cpu(const at::Tensor& t, const char* caller, const char* name) {
  if (!t.defined() || !t.device().is_cpu() || t.scalar_type() != at::kFloat) {
    throw std::invalid_argument(fmt::format("{}: {} must be a float32 CPU tensor", caller, name));
  }
}

}  // namespace

std::pair<at::Tensor, at::Tensor> rms_norm_rows(const at::Tensor& x, const at::Tensor& weight,
                                                double eps) {
  check_float_cpu(x, "rms_norm_rows", "x");
  check_float_cpu(weight, "rms_norm_rows", "weight");
  const at::Tensor xc = x.contiguous(), w = weight.contiguous();
  const int64_t n = x.size(-1), rows = n == 0 ? 0 : x.numel() / n;
  std::vector<int64_t> scale_shape(x.sizes().begin(), x.sizes().end());
  scale_shape.back() = 1;
  at::Tensor y = at::empty_like(xc), s = at::empty(scale_shape, x.options());
  const NormOperands op{.x = xc.data_ptr<float>(),
                        .w = w.data_ptr<float>(),
                        .y = y.data_ptr<float>(),
                        .s = s.data_ptr<float>(),
                        .n = n,
                        .eps = static_cast<float>(eps)};
  const auto run = cpu_has_avx2() ? norm_forward_avx2 : norm_forward_baseline;
  kernel_parallel_for(0, rows, simd::grain_for(n),
                      [&](int64_t begin, int64_t end) { run(op, begin, end); });
  return {y, s};
}

at::Tensor rms_norm_rows_backward(const at::Tensor& dy, const at::Tensor& x,
                                  const at::Tensor& weight, const at::Tensor& s) {
  check_float_cpu(dy, "rms_norm_rows_backward", "dy");
  const at::Tensor dyc = dy.contiguous(), xc = x.contiguous(), w = weight.contiguous(),
                   sc = s.contiguous();
  const int64_t n = x.size(-1), rows = n == 0 ? 0 : x.numel() / n;
  at::Tensor dx = at::empty_like(xc);
  const NormOperands op{.x = xc.data_ptr<float>(),
                        .w = w.data_ptr<float>(),
                        .dy = dyc.data_ptr<float>(),
                        .y = dx.data_ptr<float>(),
                        .s = sc.data_ptr<float>(),
                        .n = n};
  const auto run = cpu_has_avx2() ? norm_backward_avx2 : norm_backward_baseline;
  kernel_parallel_for(0, rows, simd::grain_for(n),
                      [&](int64_t begin, int64_t end) { run(op, begin, end); });
  return dx;
}

at::Tensor rope_rows(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     bool backward) {
  check_float_cpu(x, "rope_rows", "x");
  if (x.dim() != 4 || x.stride(3) != 1 || x.size(3) % 2 != 0 || cos.numel() != sin.numel() ||
      cos.numel() != x.size(0) * x.size(2) * x.size(3)) {
    throw std::invalid_argument(fmt::format(
        "rope_rows: x {} (last dimension contiguous and even) against cos {} and sin {} "
        "([b, 1, t, d])",
        c10::str(x.sizes()), c10::str(cos.sizes()), c10::str(sin.sizes())));
  }
  const at::Tensor c = cos.contiguous(), sn = sin.contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options());  // contiguous
  RopeOperands op{.x = x.data_ptr<float>(),
                  .cos = c.data_ptr<float>(),
                  .sin = sn.data_ptr<float>(),
                  .y = y.data_ptr<float>(),
                  .heads = x.size(1),
                  .t = x.size(2),
                  .d = x.size(3),
                  .x_stride = {x.stride(0), x.stride(1), x.stride(2)}};
  const auto run = cpu_has_avx2() ? rope_avx2 : rope_baseline;
  kernel_parallel_for(0, x.size(0) * op.heads * op.t, simd::grain_for(op.d),
                      [&](int64_t begin, int64_t end) { run(op, backward, begin, end); });
  return y;
}

std::pair<at::Tensor, at::Tensor> swiglu_rows_backward(const at::Tensor& dy, const at::Tensor& gate,
                                                       const at::Tensor& up) {
  check_float_cpu(dy, "swiglu_rows_backward", "dy");
  check_float_cpu(gate, "swiglu_rows_backward", "gate");
  check_float_cpu(up, "swiglu_rows_backward", "up");
  if (dy.sizes() != gate.sizes() || up.sizes() != gate.sizes()) {
    throw std::invalid_argument(fmt::format("swiglu_rows_backward: dy {}, gate {} and up {} differ",
                                            c10::str(dy.sizes()), c10::str(gate.sizes()),
                                            c10::str(up.sizes())));
  }
  const at::Tensor dyc = dy.contiguous(), g = gate.contiguous(), u = up.contiguous();
  at::Tensor d_gate = at::empty_like(g), d_up = at::empty_like(u);
  const SwigluOperands op{.gate = g.data_ptr<float>(),
                          .up = u.data_ptr<float>(),
                          .dy = dyc.data_ptr<float>(),
                          .d_gate = d_gate.data_ptr<float>(),
                          .d_up = d_up.data_ptr<float>()};
  const auto run = cpu_has_avx2() ? swiglu_backward_avx2 : swiglu_backward_baseline;
  // Chunks of 64k elements: whole vectors, and worth waking a thread for.
  constexpr int64_t kChunk = 64 * 1024;
  const int64_t n = g.numel(), chunks = (n + kChunk - 1) / kChunk;
  kernel_parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    run(op, first * kChunk, std::min(n, last * kChunk));
  });
  return {d_gate, d_up};
}

}  // namespace vitrine::models
