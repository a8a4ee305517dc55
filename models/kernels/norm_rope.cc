#include "models/kernels/norm_rope.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>

#include "models/kernels/simd_vec8.h"
#include "models/runtime.h"

namespace vitrine::models {
namespace {

using simd::load8;
using simd::store8;
using simd::Vec8;

bool inference_float(const at::Tensor& t) {
  return c10::InferenceMode::is_enabled() && t.defined() && t.device().is_cpu() &&
         t.scalar_type() == at::kFloat;
}

// Rows [0, rows) of x (stride d) normalized into out.
__attribute__((always_inline)) inline void norm_rows(const float* x, const float* w, int64_t rows,
                                                     int64_t d, float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    float* o = out + r * d;
    Vec8 acc = {};
    int64_t k = 0;
    for (; k + 8 <= d; k += 8) acc += load8(xr + k) * load8(xr + k);
    float squares = simd::sum8(acc);
    for (; k < d; ++k) squares += xr[k] * xr[k];
    const float scale = 1.0f / std::sqrt(squares / static_cast<float>(d) + eps);
    for (k = 0; k + 8 <= d; k += 8) store8(o + k, load8(w + k) * (load8(xr + k) * scale));
    for (; k < d; ++k) o[k] = w[k] * (xr[k] * scale);
  }
}

VITRINE_AVX2 void norm_rows_avx2(const float* x, const float* w, int64_t rows, int64_t d, float eps,
                                 float* out) {
  norm_rows(x, w, rows, d, eps, out);
}
__attribute__((flatten)) void norm_rows_default(const float* x, const float* w, int64_t rows,
                                                int64_t d, float eps, float* out) {
  norm_rows(x, w, rows, d, eps, out);
}

// One row of d: out = x·c + [-x2, x1]·s.
__attribute__((always_inline)) inline void rope_row(const float* x, const float* c, const float* s,
                                                    int64_t d, float* out) {
  const int64_t half = d / 2;
  int64_t i = 0;
  for (; i + 8 <= half; i += 8) {
    const Vec8 x1 = load8(x + i), x2 = load8(x + half + i);
    store8(out + i, x1 * load8(c + i) - x2 * load8(s + i));
    store8(out + half + i, x2 * load8(c + half + i) + x1 * load8(s + half + i));
  }
  for (; i < half; ++i) {
    out[i] = x[i] * c[i] - x[half + i] * s[i];
    out[half + i] = x[half + i] * c[half + i] + x[i] * s[half + i];
  }
}

struct RopeOperands {
  const float* x;
  const float* cos;
  const float* sin;
  float* out;
  int64_t b, h, s, d;
  int64_t xs[3], cs[2];  // x's strides of b, h, s; cos's and sin's of b, s
};

__attribute__((always_inline)) inline void rope_all(const RopeOperands& op) {
  for (int64_t i = 0; i < op.b; ++i) {
    for (int64_t j = 0; j < op.h; ++j) {
      for (int64_t t = 0; t < op.s; ++t) {
        const int64_t angle = i * op.cs[0] + t * op.cs[1];
        rope_row(op.x + i * op.xs[0] + j * op.xs[1] + t * op.xs[2], op.cos + angle, op.sin + angle,
                 op.d, op.out + ((i * op.h + j) * op.s + t) * op.d);
      }
    }
  }
}

VITRINE_AVX2 void rope_avx2(const RopeOperands& op) {
  rope_all(op);
}
__attribute__((flatten)) void rope_default(const RopeOperands& op) {
  rope_all(op);
}

}  // namespace

bool rms_norm_rows_applies(const at::Tensor& x, const at::Tensor& weight) {
  return inference_float(x) && inference_float(weight) && x.dim() >= 1 && weight.dim() == 1 &&
         x.size(-1) == weight.size(0) && weight.size(0) > 0;
}

at::Tensor rms_norm_rows(const at::Tensor& x_in, const at::Tensor& weight_in, double eps) {
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  at::Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);  // [..., d]
  const int64_t d = x.size(-1), rows = x.numel() / d;
  const auto kernel = cpu_has_avx2() ? norm_rows_avx2 : norm_rows_default;
  kernel(x.data_ptr<float>(), weight.data_ptr<float>(), rows, d, static_cast<float>(eps),
         out.data_ptr<float>());
  return out;
}

bool rope_rows_applies(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (!inference_float(x) || !inference_float(cos) || !inference_float(sin)) return false;
  if (x.dim() != 4 || cos.dim() != 4 || x.size(3) % 2 != 0 || x.stride(3) != 1) return false;
  const std::vector<int64_t> angles = {x.size(0), 1, x.size(2), x.size(3)};
  return cos.sizes() == angles && sin.sizes() == angles && cos.strides() == sin.strides() &&
         cos.stride(3) == 1;
}

at::Tensor rope_rows(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  at::Tensor out = at::empty(x.sizes(), x.options());  // [b, h, s, d]
  const RopeOperands op{x.data_ptr<float>(),
                        cos.data_ptr<float>(),
                        sin.data_ptr<float>(),
                        out.data_ptr<float>(),
                        x.size(0),
                        x.size(1),
                        x.size(2),
                        x.size(3),
                        {x.stride(0), x.stride(1), x.stride(2)},
                        {cos.stride(0), cos.stride(2)}};
  (cpu_has_avx2() ? rope_avx2 : rope_default)(op);
  return out;
}

}  // namespace vitrine::models
