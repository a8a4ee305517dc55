#include "models/kernels/decode_attention.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>

#include "models/kernels/kernel_threads.h"
#include "models/kernels/simd_vec8.h"
#include "models/runtime.h"

namespace vitrine::models {
namespace {

using simd::load8;
using simd::store8;
using simd::Vec8;

// One (sequence, head): scores[r][t] = q_r · k_t. Eight keys at a time: their
// eight dot products are independent chains of multiply-adds (one key alone
// waits on each add before the next), and sum8x8 reduces all eight at once.
__attribute__((always_inline)) inline void scores_one_head(const float* q, int64_t rows,
                                                           const float* k, int64_t k_stride,
                                                           int64_t keys, int64_t d, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* qr = q + r * d;
    float* o = out + r * keys;
    int64_t t = 0;
    for (; t + 8 <= keys; t += 8) {
      const float* kt = k + t * k_stride;
      Vec8 acc[8] = {};
      for (int64_t i = 0; i < d; i += 8) {
        const Vec8 qv = load8(qr + i);
        for (int j = 0; j < 8; ++j) acc[j] += qv * load8(kt + j * k_stride + i);
      }
      store8(o + t, simd::sum8x8(acc));
    }
    for (; t < keys; ++t) {
      const float* kt = k + t * k_stride;
      Vec8 acc = {};
      for (int64_t i = 0; i < d; i += 8) acc += load8(qr + i) * load8(kt + i);
      o[t] = simd::sum8(acc);
    }
  }
}

// One (sequence, head): out[r] = Σ_t p[r][t] · v_t. The output row is held
// in registers, 64 floats at a time, while every key's value row streams
// past (rather than being loaded and stored back once per key).
__attribute__((always_inline)) inline void values_one_head(const float* p, int64_t rows,
                                                           const float* v, int64_t v_stride,
                                                           int64_t keys, int64_t d, float* out) {
  constexpr int64_t kBlock = 8;  // vectors of the output row per pass
  for (int64_t r = 0; r < rows; ++r) {
    const float* pr = p + r * keys;
    for (int64_t c = 0; c < d; c += 8 * kBlock) {
      const int64_t n = std::min<int64_t>(kBlock, (d - c) / 8);
      Vec8 acc[kBlock] = {};
      for (int64_t t = 0; t < keys; ++t) {
        const float weight = pr[t];
        if (weight == 0) continue;  // masked keys
        const float* vt = v + t * v_stride + c;
        for (int64_t j = 0; j < n; ++j) acc[j] += load8(vt + 8 * j) * weight;
      }
      for (int64_t j = 0; j < n; ++j) store8(out + r * d + c + 8 * j, acc[j]);
    }
  }
}

VITRINE_AVX2 void scores_avx2(const float* q, int64_t rows, const float* k, int64_t k_stride,
                              int64_t keys, int64_t d, float* out) {
  scores_one_head(q, rows, k, k_stride, keys, d, out);
}
__attribute__((flatten)) void scores_default(const float* q, int64_t rows, const float* k,
                                             int64_t k_stride, int64_t keys, int64_t d,
                                             float* out) {
  scores_one_head(q, rows, k, k_stride, keys, d, out);
}
VITRINE_AVX2 void values_avx2(const float* p, int64_t rows, const float* v, int64_t v_stride,
                              int64_t keys, int64_t d, float* out) {
  values_one_head(p, rows, v, v_stride, keys, d, out);
}
__attribute__((flatten)) void values_default(const float* p, int64_t rows, const float* v,
                                             int64_t v_stride, int64_t keys, int64_t d,
                                             float* out) {
  values_one_head(p, rows, v, v_stride, keys, d, out);
}

// Calls kernel(bh, rows of kv for that head) for every (sequence, head) of
// kv [b, h, keys, d], bh = sequence * h + head, the heads in parallel.
template <typename Kernel>
void for_each_head(const at::Tensor& kv, int64_t work_per_head, const Kernel& kernel) {
  const int64_t h = kv.size(1);
  const float* base = kv.data_ptr<float>();
  kernel_parallel_for(0, kv.size(0) * h, simd::grain_for(work_per_head),
                      [&](int64_t begin, int64_t end) {
                        for (int64_t bh = begin; bh < end; ++bh) {
                          kernel(bh, base + (bh / h) * kv.stride(0) + (bh % h) * kv.stride(1));
                        }
                      });
}

}  // namespace

bool decode_attention_applies(const at::Tensor& q, const at::Tensor& k) {
  if (c10::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad())) return false;
  return q.device().is_cpu() && k.device().is_cpu() && q.scalar_type() == at::kFloat &&
         k.scalar_type() == at::kFloat && q.dim() == 4 && k.dim() == 4 && q.size(3) % 8 == 0 &&
         k.stride(3) == 1;
}

at::Tensor attention_scores(const at::Tensor& q_in, const at::Tensor& k) {
  const at::Tensor q = q_in.contiguous();
  const int64_t b = q.size(0), h = q.size(1), rows = q.size(2), d = q.size(3), keys = k.size(2);
  at::Tensor out = at::empty({b, h, rows, keys}, q.options());  // [b, h, rows, keys]
  const float* qp = q.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const auto kernel = cpu_has_avx2() ? scores_avx2 : scores_default;
  for_each_head(k, rows * keys * d, [&](int64_t bh, const float* kb) {
    kernel(qp + bh * rows * d, rows, kb, k.stride(2), keys, d, op + bh * rows * keys);
  });
  return out;
}

at::Tensor attention_values(const at::Tensor& p_in, const at::Tensor& v) {
  const at::Tensor p = p_in.contiguous();
  const int64_t b = p.size(0), h = p.size(1), rows = p.size(2), keys = p.size(3), d = v.size(3);
  at::Tensor out = at::empty({b, h, rows, d}, p.options());  // [b, h, rows, d]
  const float* pp = p.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const auto kernel = cpu_has_avx2() ? values_avx2 : values_default;
  for_each_head(v, rows * keys * d, [&](int64_t bh, const float* vb) {
    kernel(pp + bh * rows * keys, rows, vb, v.stride(2), keys, d, op + bh * rows * d);
  });
  return out;
}

}  // namespace vitrine::models
