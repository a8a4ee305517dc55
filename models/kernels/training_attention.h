// The training attention's two passes, float32 on the kernel threads: per
// query head, blocks of query rows against the keys they attend, with the
// scores, softmax and products in one loop over a block that stays in
// cache, the backward recomputing them (nothing of the scores is kept).
//
// Replaces, in training, a dozen ATen operators per block (batched
// products, each copying its operands for BLAS and waking BLAS's own
// threads, the softmax, masking, copies): at TinyLlama's shape and 512
// positions those reached about 40 to 50 GFLOP/s, a fifth of the
// machine's float32 rate, and took a fifth of a training step.
//
// Each head runs on one kernel thread, all its blocks in turn; its shares
// of dK and dV are summed over the heads of a KV group afterwards, so no two
// threads write the same memory.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace vitrine::models {

// Query rows [begin, begin + rows) of every head, the keys [0, keys) any of
// them attends, and the first key any of them does not (keys before it need
// no masking: under a causal mask, only the block on the diagonal does).
struct AttentionBlock {
  int64_t begin = 0, rows = 0, keys = 0, masked_from = 0;
};

// The query rows of one attention call and their blocks: q [b, KV, g·s, d]
// (the g heads sharing a KV head stacked along the rows), k and v
// [b, KV, keys, d] (any strides with the last dimension contiguous), mask
// [b, 1, s, keys] bool (true = not attended; any strides; undefined = all
// attended). Float32 CPU tensors.
struct AttentionOperands {
  at::Tensor q, k, v, mask;
  int64_t groups = 1;
  std::vector<AttentionBlock> blocks;  // covering [0, s) in order
};

// softmax(q·kᵀ / √d, masked) · v: [b, KV, g·s, d]. A row that attends no
// key is NaN, as the unblocked formula's.
at::Tensor training_attention_forward(const AttentionOperands& op);

struct AttentionGradients {
  at::Tensor q, k, v;  // shaped as the operands (k and v contiguous)
};

// The gradients of the forward's output against d_out [b, KV, g·s, d].
AttentionGradients training_attention_backward(const AttentionOperands& op,
                                               const at::Tensor& d_out);

}  // namespace vitrine::models
