// The builds of packed_linear_bf16's kernels, one per instruction set, that
// packed_linear_bf16.cc chooses between and splits over the kernel threads.
// Internal to models/kernels/: callers use packed_linear_bf16.h.
#pragma once

#include <cstdint>

#include "models/kernels/packed_linear_bf16.h"

namespace vitrine::models::bf16_kernels {

// y = x·Wᵀ over packed pairs. The widening builds read x (float32 rows of
// stride x_stride, an even count: a zero column pads an odd width); the
// vdpbf16ps build reads xb (the rows rounded to bfloat16 pairs, stride
// in2). y: rows of stride out.
struct ForwardOperands {
  const float* x = nullptr;
  const uint32_t* xb = nullptr;
  const uint32_t* pairs = nullptr;  // [panels, in2, 16] pairs of bfloat16
  float* y = nullptr;
  int64_t x_stride = 0, in2 = 0, out = 0;
  int64_t y_stride = 0;  // y's row stride; 0 = out
};

// dX = dY·W over packed pairs: dy rows of stride dy_stride (a whole number
// of panels: zero columns pad an out that is not), dx rows of stride in.
// The vdpbf16ps build reads dyb instead: dY rounded to bfloat16 pairs of
// outputs, rows of dy_stride / 2 words.
struct BackwardOperands {
  const float* dy = nullptr;
  const uint32_t* pairs = nullptr;
  float* dx = nullptr;
  int64_t dy_stride = 0, in2 = 0, in = 0;
  const uint32_t* dyb = nullptr;
};

// A build computes the outputs of [first, last) (panels forward, input
// pairs backward) for `rows` rows. Work split between threads goes in
// whole groups of `group`, so that no thread ends in a partial tile.
struct ForwardBuild {
  void (*run)(const ForwardOperands& op, int64_t rows, int64_t first, int64_t last);
  int64_t group;
};
struct BackwardBuild {
  void (*run)(const BackwardOperands& op, int64_t rows, int64_t first, int64_t last);
  int64_t group;
};

// `build` is one of the single builds of Bf16Path (not kExact or kFast);
// backward ones are chosen for `rows`.
ForwardBuild forward_build(Bf16Path build);
BackwardBuild backward_build(Bf16Path build, int64_t rows);

// Rows [begin, end) of x (rows of `in` floats) rounded to bfloat16 with
// bf16_from_float into xb (rows of 2·in2 halves, a zero past an odd in).
void round_rows_to_bf16(const float* x, int64_t in, int64_t begin, int64_t end, uint16_t* xb,
                        int64_t in2);

}  // namespace vitrine::models::bf16_kernels
