#include "models/kernels/training_attention.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "models/kernels/kernel_threads.h"
#include "models/kernels/lanes_exp.h"
#include "models/kernels/panel_tiles.h"
#include "models/kernels/simd_vec8.h"
#include "models/runtime.h"

namespace vitrine::models {
namespace {

using simd::exp_lanes;
using simd::Lanes;

// Score rows are this many keys wide at least (the stride of a block's
// scores and of the transposed keys and values), so that every build
// works on whole vectors.
constexpr int64_t kKeyPad = 16;

int64_t round_up(int64_t n, int64_t to) {
  return (n + to - 1) / to * to;
}

// C[m][n] (+)= Σ_k A(m, k)·B[k][n] over m < rows, n < cols, k < depth.
// A(m, k) is a[m·a_rs + k] (a row-major operand) or, transposed, a[m + k·a_cs];
// B has rows of stride b_rs, C rows of stride c_rs.
struct Product {
  const float* a = nullptr;
  int64_t a_stride = 0;  // a_rs, or a_cs when transposed
  const float* b = nullptr;
  int64_t b_rs = 0;
  float* c = nullptr;
  int64_t c_rs = 0;
  int64_t rows = 0, cols = 0, depth = 0;
  bool accumulate = false;
};

// Rows [m0, m0 + R) × P vectors of columns from n0: R·P accumulators, per
// step of the reduction P loads of B and R broadcasts of A.
template <int L, bool kTransposed, int P, int R>
__attribute__((always_inline)) inline void product_tile(const Product& op, int64_t m0, int64_t n0) {
  using V = Lanes<L>;
  typename V::F acc[P][R] = {};
  const float* b = op.b + n0;
  if constexpr (kTransposed) {
    const float* a = op.a + m0;
    for (int64_t k = 0; k < op.depth; ++k, a += op.a_stride, b += op.b_rs) {
      typename V::F bv[P];
      for (int p = 0; p < P; ++p) bv[p] = V::load(b + p * L);
      for (int r = 0; r < R; ++r) {
        for (int p = 0; p < P; ++p) acc[p][r] += bv[p] * a[r];
      }
    }
  } else {
    const float* a[R];
    for (int r = 0; r < R; ++r) a[r] = op.a + (m0 + r) * op.a_stride;
    for (int64_t k = 0; k < op.depth; ++k, b += op.b_rs) {
      typename V::F bv[P];
      for (int p = 0; p < P; ++p) bv[p] = V::load(b + p * L);
      for (int r = 0; r < R; ++r) {
        for (int p = 0; p < P; ++p) acc[p][r] += bv[p] * a[r][k];
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float* c = op.c + (m0 + r) * op.c_rs + n0;
    for (int p = 0; p < P; ++p) {
      V::store(c + p * L, op.accumulate ? V::load(c + p * L) + acc[p][r] : acc[p][r]);
    }
  }
}

// The rows left after the full tiles (fewer than R), R chosen at run time.
template <int L, bool kTransposed, int P, int R>
__attribute__((always_inline)) inline void product_rows(const Product& op, int64_t m0, int64_t rows,
                                                        int64_t n0) {
  if constexpr (R > 1) {
    if (rows < R) return product_rows<L, kTransposed, P, R - 1>(op, m0, rows, n0);
  }
  product_tile<L, kTransposed, P, R>(op, m0, n0);
}

template <int L, bool kTransposed, int P, int R>
__attribute__((always_inline)) inline void product_columns(const Product& op, int64_t n0) {
  int64_t m0 = 0;
  for (; m0 + R <= op.rows; m0 += R) product_tile<L, kTransposed, P, R>(op, m0, n0);
  if (m0 < op.rows) product_rows<L, kTransposed, P, R - 1>(op, m0, op.rows - m0, n0);
}

// Groups of P vectors of columns, each through all rows (B's share of the
// group, depth × P vectors, stays in L1 while the rows go by), then single
// vectors, then the columns past the last whole vector one by one.
template <int L, bool kTransposed, int P, int R>
__attribute__((always_inline)) inline void product(const Product& op) {
  int64_t n0 = 0;
  for (; n0 + P * L <= op.cols; n0 += P * L) product_columns<L, kTransposed, P, R>(op, n0);
  for (; n0 + L <= op.cols; n0 += L) product_columns<L, kTransposed, 1, R>(op, n0);
  for (; n0 < op.cols; ++n0) {
    for (int64_t m = 0; m < op.rows; ++m) {
      float sum = 0;
      for (int64_t k = 0; k < op.depth; ++k) {
        sum += (kTransposed ? op.a[m + k * op.a_stride] : op.a[m * op.a_stride + k]) *
               op.b[k * op.b_rs + n0];
      }
      float& c = op.c[m * op.c_rs + n0];
      c = op.accumulate ? c + sum : sum;
    }
  }
}

// A row of scores → its softmax, in place: scaled, the masked keys (from
// masked_from on, where mask[j·mask_cs] is true) at −∞, over keys [0, n).
// A row with nothing attended becomes NaN, as softmax makes it.
template <int L>
__attribute__((always_inline)) inline void softmax_row(float* s, int64_t n, float scale,
                                                       const bool* mask, int64_t mask_cs,
                                                       int64_t masked_from) {
  using V = Lanes<L>;
  using F = typename V::F;
  constexpr float kInf = std::numeric_limits<float>::infinity();
  int64_t j = 0;
  for (; j + L <= n; j += L) V::store(s + j, V::load(s + j) * scale);
  for (; j < n; ++j) s[j] *= scale;
  if (mask != nullptr) {
    for (j = masked_from; j < n; ++j) {
      if (mask[j * mask_cs]) s[j] = -kInf;
    }
  }
  F top = F{} - kInf;
  for (j = 0; j + L <= n; j += L) {
    const F v = V::load(s + j);
    top = v > top ? v : top;
  }
  float max = -kInf;
  for (int l = 0; l < L; ++l) max = std::max(max, top[l]);
  for (; j < n; ++j) max = std::max(max, s[j]);
  if (max == -kInf) {
    std::fill(s, s + n, std::numeric_limits<float>::quiet_NaN());
    return;
  }
  F sums = {};
  for (j = 0; j + L <= n; j += L) {
    const F e = exp_lanes<L>(V::load(s + j) - max);
    V::store(s + j, e);
    sums += e;
  }
  float sum = 0;
  for (int l = 0; l < L; ++l) sum += sums[l];
  if (j < n) {  // the last keys through one more vector, −∞ past n
    float tail[L];
    for (int l = 0; l < L; ++l) tail[l] = j + l < n ? s[j + l] - max : -kInf;
    const F e = exp_lanes<L>(V::load(tail));
    for (int l = 0; j + l < n; ++l) {
      s[j + l] = e[l];
      sum += e[l];
    }
  }
  const float inverse = 1.0f / sum;
  for (j = 0; j + L <= n; j += L) V::store(s + j, V::load(s + j) * inverse);
  for (; j < n; ++j) s[j] *= inverse;
}

// softmax's backward on a row, scaled: dp ← scale·p∘(dp − Σ dp∘p).
template <int L>
__attribute__((always_inline)) inline void softmax_backward_row(const float* p, float* dp,
                                                                int64_t n, float scale) {
  using V = Lanes<L>;
  typename V::F sums = {};
  int64_t j = 0;
  for (; j + L <= n; j += L) sums += V::load(p + j) * V::load(dp + j);
  float dot = 0;
  for (int l = 0; l < L; ++l) dot += sums[l];
  for (; j < n; ++j) dot += p[j] * dp[j];
  for (j = 0; j + L <= n; j += L) {
    V::store(dp + j, V::load(p + j) * (V::load(dp + j) - dot) * scale);
  }
  for (; j < n; ++j) dp[j] = p[j] * (dp[j] - dot) * scale;
}

// Raw views of the operands for the kernels: strides in floats.
struct Heads {
  const float *q = nullptr, *k = nullptr, *v = nullptr;
  int64_t q_b = 0, q_h = 0, q_r = 0, k_b = 0, k_h = 0, k_r = 0, v_b = 0, v_h = 0, v_r = 0;
  const float *kt = nullptr, *vt = nullptr;  // [b, KV, d, keys_pad], zero past keys
  const bool* mask = nullptr;
  int64_t m_b = 0, m_r = 0, m_c = 0;
  int64_t kv = 0, groups = 0, s = 0, d = 0, keys = 0, keys_pad = 0, max_rows = 0;
  float scale = 0;
  const AttentionBlock* blocks = nullptr;
  int64_t n_blocks = 0;
  float* out = nullptr;                                  // forward: [b, KV, g·s, d]
  const float* d_out = nullptr;                          // backward: [b, KV, g·s, d]
  float *d_q = nullptr, *d_k = nullptr, *d_v = nullptr;  // d_k, d_v: [b, KV, g, keys, d], zeroed
};

// One query head's pointers: item = (batch row, KV head, group member).
struct Head {
  const float *q, *k, *v, *kt, *vt;
  const bool* mask;
  int64_t rows;     // offset of its first row in out, d_out and d_q: [b, KV, g·s] rows
  int64_t kv_rows;  // offset of its first key in d_k and d_v: [b, KV, g, keys] rows
};

Head head(const Heads& h, int64_t item) {
  const int64_t bi = item / (h.kv * h.groups), kh = item / h.groups % h.kv, gi = item % h.groups;
  const int64_t pair = bi * h.kv + kh;
  return {h.q + bi * h.q_b + kh * h.q_h + gi * h.s * h.q_r,
          h.k + bi * h.k_b + kh * h.k_h,
          h.v + bi * h.v_b + kh * h.v_h,
          h.kt + pair * h.d * h.keys_pad,
          h.vt + pair * h.d * h.keys_pad,
          h.mask == nullptr ? nullptr : h.mask + bi * h.m_b,
          item * h.s,
          item * h.keys};
}

// The register tiles: AVX-512 has 32 registers of 16 floats (4 × 6
// accumulators, 4 rows of B, a broadcast), AVX2 16 of 8 (2 × 6, 2, 1), SSE
// 16 of 4 (2 × 4).
template <int L>
struct TileShape;
template <>
struct TileShape<16> {
  static constexpr int P = 4, R = 6;
};
template <>
struct TileShape<8> {
  static constexpr int P = 2, R = 6;
};
template <>
struct TileShape<4> {
  static constexpr int P = 2, R = 4;
};

// C (+)= A·B with C [rows, cols] of row stride c_rs, B [depth, cols] of row
// stride b_rs, and A [rows, depth] row-major (row stride a_stride) or, with
// kTransposed, stored as its transpose (A(m, k) = a[m + k·a_stride]).
template <int L, bool kTransposed>
__attribute__((always_inline)) inline void multiply(const float* a, int64_t a_stride,
                                                    const float* b, int64_t b_rs, float* c,
                                                    int64_t c_rs, int64_t rows, int64_t cols,
                                                    int64_t depth, bool accumulate = false) {
  product<L, kTransposed, TileShape<L>::P, TileShape<L>::R>(Product{.a = a,
                                                                    .a_stride = a_stride,
                                                                    .b = b,
                                                                    .b_rs = b_rs,
                                                                    .c = c,
                                                                    .c_rs = c_rs,
                                                                    .rows = rows,
                                                                    .cols = cols,
                                                                    .depth = depth,
                                                                    .accumulate = accumulate});
}

// The block's probabilities into `scores` (rows of stride n_pad): the
// scores q·kᵀ, then each row's softmax.
template <int L>
__attribute__((always_inline)) inline void block_probs(const Heads& h, const Head& x,
                                                       const AttentionBlock& block, int64_t n_pad,
                                                       float* scores) {
  multiply<L, false>(x.q + block.begin * h.q_r, h.q_r, x.kt, h.keys_pad, scores, n_pad, block.rows,
                     n_pad, h.d);  // S = q·kᵀ
  for (int64_t r = 0; r < block.rows; ++r) {
    softmax_row<L>(scores + r * n_pad, block.keys, h.scale,
                   x.mask == nullptr ? nullptr : x.mask + (block.begin + r) * h.m_r, h.m_c,
                   block.masked_from);
  }
}

template <int L>
__attribute__((always_inline)) inline void forward_heads(const Heads& h, int64_t first,
                                                         int64_t last) {
  std::vector<float> scores(static_cast<size_t>(h.max_rows * h.keys_pad));
  for (int64_t item = first; item < last; ++item) {
    const Head x = head(h, item);
    for (int64_t i = 0; i < h.n_blocks; ++i) {
      const AttentionBlock& block = h.blocks[i];
      const int64_t n_pad = round_up(block.keys, kKeyPad);
      block_probs<L>(h, x, block, n_pad, scores.data());
      multiply<L, false>(scores.data(), n_pad, x.v, h.v_r, h.out + (x.rows + block.begin) * h.d,
                         h.d, block.rows, h.d, block.keys);  // out = P·v
    }
  }
}

template <int L>
__attribute__((always_inline)) inline void backward_heads(const Heads& h, int64_t first,
                                                          int64_t last) {
  std::vector<float> probs(static_cast<size_t>(h.max_rows * h.keys_pad));
  std::vector<float> grads(probs.size());
  for (int64_t item = first; item < last; ++item) {
    const Head x = head(h, item);
    float* d_k = h.d_k + x.kv_rows * h.d;
    float* d_v = h.d_v + x.kv_rows * h.d;
    for (int64_t i = 0; i < h.n_blocks; ++i) {
      const AttentionBlock& block = h.blocks[i];
      const int64_t n_pad = round_up(block.keys, kKeyPad);
      const float* d_out = h.d_out + (x.rows + block.begin) * h.d;
      block_probs<L>(h, x, block, n_pad, probs.data());  // recomputed
      multiply<L, true>(probs.data(), n_pad, d_out, h.d, d_v, h.d, block.keys, h.d, block.rows,
                        /*accumulate=*/true);  // dV += Pᵀ·dO
      multiply<L, false>(d_out, h.d, x.vt, h.keys_pad, grads.data(), n_pad, block.rows, n_pad,
                         h.d);  // dP = dO·vᵀ
      // dS = P∘(dP − Σ dP∘P), times the scale: the gradient of q·kᵀ.
      for (int64_t r = 0; r < block.rows; ++r) {
        softmax_backward_row<L>(probs.data() + r * n_pad, grads.data() + r * n_pad, block.keys,
                                h.scale);
      }
      multiply<L, false>(grads.data(), n_pad, x.k, h.k_r, h.d_q + (x.rows + block.begin) * h.d, h.d,
                         block.rows, h.d, block.keys);  // dQ = dS·k
      multiply<L, true>(grads.data(), n_pad, x.q + block.begin * h.q_r, h.q_r, d_k, h.d, block.keys,
                        h.d, block.rows, /*accumulate=*/true);  // dK += dSᵀ·q
    }
  }
}

template <int L>
__attribute__((always_inline)) inline void heads_span(const Heads& h, bool backward, int64_t first,
                                                      int64_t last) {
  if (backward) {
    backward_heads<L>(h, first, last);
  } else {
    forward_heads<L>(h, first, last);
  }
}

__attribute__((target("avx512f,avx512vl,avx2,fma"), flatten)) void heads_avx512(const Heads& h,
                                                                                bool backward,
                                                                                int64_t first,
                                                                                int64_t last) {
  heads_span<16>(h, backward, first, last);
}
VITRINE_AVX2 void heads_avx2(const Heads& h, bool backward, int64_t first, int64_t last) {
  heads_span<8>(h, backward, first, last);
}
__attribute__((flatten)) void heads_baseline(const Heads& h, bool backward, int64_t first,
                                             int64_t last) {
  heads_span<4>(h, backward, first, last);
}

// Heads per chunk: a head's blocks are ~s²·d multiply-adds, far above the
// kernel threads' grain already.
constexpr int64_t kHeadGrain = 1;

// Every query head of h (`items` of them: batch rows × KV heads × group
// members) over the kernel threads, in the build this CPU runs.
void run_heads(const Heads& h, int64_t items, bool backward) {
  const auto kernel = cpu_has_avx512() ? heads_avx512
                      : cpu_has_avx2() ? heads_avx2
                                       : heads_baseline;
  kernel_parallel_for(0, items, kHeadGrain,
                      [&](int64_t first, int64_t last) { kernel(h, backward, first, last); });
}

// Checks the operands, naming what is wrong.
void check(const AttentionOperands& op) {
  const auto describe = [](const at::Tensor& t) {
    return t.defined() ? fmt::format("{} {}", c10::str(t.sizes()), c10::toString(t.scalar_type()))
                       : std::string("undefined");
  };
  const auto fail = [&](const std::string& what) {
    throw std::invalid_argument(
        fmt::format("training attention: {} (q {}, k {}, v {}, mask {}, {} groups)", what,
                    describe(op.q), describe(op.k), describe(op.v), describe(op.mask), op.groups));
  };
  for (const at::Tensor* t : {&op.q, &op.k, &op.v}) {
    if (!t->defined() || t->dim() != 4 || t->scalar_type() != at::kFloat || !t->device().is_cpu())
      fail("q, k and v must be 4-D float32 CPU tensors");
  }
  const int64_t b = op.q.size(0), kv = op.q.size(1), d = op.q.size(3), keys = op.k.size(2);
  if (op.groups < 1 || op.q.size(2) % op.groups != 0) fail("q's rows are not groups × positions");
  if (op.k.sizes() != op.v.sizes() || op.k.size(0) != b || op.k.size(1) != kv || op.k.size(3) != d)
    fail("k and v must be [b, KV, keys, d] as q");
  if (keys < 1) fail("no keys");
  const int64_t s = op.q.size(2) / op.groups;
  if (op.mask.defined() &&
      (op.mask.scalar_type() != at::kBool || op.mask.sizes() != at::IntArrayRef({b, 1, s, keys})))
    fail(fmt::format("the mask must be bool [{}, 1, {}, {}]", b, s, keys));
  int64_t next = 0;
  for (const AttentionBlock& block : op.blocks) {
    if (block.begin != next || block.rows < 1 || block.keys < 1 || block.keys > keys ||
        block.masked_from < 0 || block.masked_from > block.keys)
      fail(fmt::format("block at row {} does not follow the blocks before it within the keys",
                       block.begin));
    next += block.rows;
  }
  if (next != s) fail(fmt::format("the blocks cover {} of {} rows", next, s));
}

// x [b, KV, keys, d] as [b, KV, d, keys_pad], zero past keys.
at::Tensor transposed_padded(const at::Tensor& x, int64_t keys_pad) {
  at::Tensor t = at::zeros({x.size(0), x.size(1), x.size(3), keys_pad}, x.options());
  t.narrow(3, 0, x.size(2)).copy_(x.transpose(2, 3));
  return t;
}

at::Tensor last_contiguous(const at::Tensor& t) {
  return t.stride(3) == 1 ? t : t.contiguous();
}

// The fields of Heads both passes use; kt and vt hold the transposed keys
// and values while it is in use.
Heads heads_of(const AttentionOperands& op, const at::Tensor& q, const at::Tensor& k,
               const at::Tensor& v, const at::Tensor& kt, const at::Tensor& vt) {
  Heads h;
  h.q = q.data_ptr<float>();
  h.k = k.data_ptr<float>();
  h.v = v.data_ptr<float>();
  h.q_b = q.stride(0), h.q_h = q.stride(1), h.q_r = q.stride(2);
  h.k_b = k.stride(0), h.k_h = k.stride(1), h.k_r = k.stride(2);
  h.v_b = v.stride(0), h.v_h = v.stride(1), h.v_r = v.stride(2);
  h.kt = kt.data_ptr<float>();
  h.vt = vt.defined() ? vt.data_ptr<float>() : nullptr;
  if (op.mask.defined()) {
    h.mask = op.mask.data_ptr<bool>();
    h.m_b = op.mask.stride(0), h.m_r = op.mask.stride(2), h.m_c = op.mask.stride(3);
  }
  h.kv = q.size(1);
  h.groups = op.groups;
  h.s = q.size(2) / op.groups;
  h.d = q.size(3);
  h.keys = k.size(2);
  h.keys_pad = kt.size(3);
  for (const AttentionBlock& block : op.blocks) h.max_rows = std::max(h.max_rows, block.rows);
  h.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(h.d)));
  h.blocks = op.blocks.data();
  h.n_blocks = static_cast<int64_t>(op.blocks.size());
  return h;
}

}  // namespace

at::Tensor training_attention_forward(const AttentionOperands& op) {
  check(op);
  const at::Tensor q = last_contiguous(op.q), k = last_contiguous(op.k), v = last_contiguous(op.v);
  const int64_t items = q.size(0) * q.size(1) * op.groups;
  const at::Tensor kt = transposed_padded(k, round_up(k.size(2), kKeyPad));
  at::Tensor out = at::empty(q.sizes(), q.options());
  Heads h = heads_of(op, q, k, v, kt, at::Tensor());
  h.out = out.data_ptr<float>();
  run_heads(h, items, /*backward=*/false);
  return out;
}

AttentionGradients training_attention_backward(const AttentionOperands& op,
                                               const at::Tensor& d_out) {
  check(op);
  if (!d_out.defined() || d_out.sizes() != op.q.sizes() || d_out.scalar_type() != at::kFloat) {
    throw std::invalid_argument(fmt::format(
        "training attention backward: the output's gradient {} must be float32 shaped as q {}",
        d_out.defined() ? c10::str(d_out.sizes()) : "undefined", c10::str(op.q.sizes())));
  }
  const at::Tensor q = last_contiguous(op.q), k = last_contiguous(op.k), v = last_contiguous(op.v),
                   d_outc = d_out.contiguous();
  const int64_t b = q.size(0), kv = q.size(1), d = q.size(3), keys = k.size(2);
  const int64_t keys_pad = round_up(keys, kKeyPad), items = b * kv * op.groups;
  const at::Tensor kt = transposed_padded(k, keys_pad), vt = transposed_padded(v, keys_pad);
  AttentionGradients grads;
  grads.q = at::empty(q.sizes(), q.options());
  // Each head's share of dK and dV, summed over its group below.
  const at::Tensor d_k = at::zeros({b, kv, op.groups, keys, d}, q.options());
  const at::Tensor d_v = at::zeros({b, kv, op.groups, keys, d}, q.options());
  Heads h = heads_of(op, q, k, v, kt, vt);
  h.d_out = d_outc.data_ptr<float>();
  h.d_q = grads.q.data_ptr<float>();
  h.d_k = d_k.data_ptr<float>();
  h.d_v = d_v.data_ptr<float>();
  run_heads(h, items, /*backward=*/true);
  grads.k = op.groups == 1 ? d_k.view({b, kv, keys, d}) : d_k.sum(2);
  grads.v = op.groups == 1 ? d_v.view({b, kv, keys, d}) : d_v.sum(2);
  return grads;
}

}  // namespace vitrine::models
