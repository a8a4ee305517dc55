#include "models/kernels/packed_linear_bf16.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "models/kernels/kernel_threads.h"
#include "models/kernels/packed_bf16_kernels.h"
#include "models/kernels/simd_vec8.h"
#include "models/runtime.h"

namespace vitrine::models {
namespace {

constexpr int64_t kPanel = 16;  // output features per panel

int64_t panel_count(int64_t out_features) {
  return (out_features + kPanel - 1) / kPanel;
}
int64_t pair_count(int64_t in_features) {
  return (in_features + 1) / 2;
}

const uint32_t* pair_words(const PackedWeightBf16& w) {
  return reinterpret_cast<const uint32_t*>(w.pairs.data_ptr<at::BFloat16>());
}

// pairs[p][k2][j][h] = round(w[16p + j][2·k2 + h]), zero past out and in,
// for panels [begin, end). Every element is written: storage may hold
// anything before.
template <typename Source, typename Round>
void pack_panels(const Source* w, int64_t out, int64_t in, int64_t begin, int64_t end,
                 uint16_t* pairs, Round round) {
  const int64_t in2 = pair_count(in);
  for (int64_t p = begin; p < end; ++p) {
    // Written front to back (a pair of inputs for 16 outputs at a time),
    // read as 16 row streams: the panel is never revisited.
    uint16_t* dst = pairs + p * in2 * kPanel * 2;
    const int64_t rows = std::min<int64_t>(kPanel, out - p * kPanel);
    const Source* first = w + p * kPanel * in;
    for (int64_t k = 0; k < 2 * in2; k += 2, dst += 2 * kPanel) {
      for (int64_t j = 0; j < rows; ++j) {
        dst[2 * j] = round(first[j * in + k]);
        dst[2 * j + 1] = k + 1 < in ? round(first[j * in + k + 1]) : 0;
      }
      for (int64_t j = rows; j < kPanel; ++j) dst[2 * j] = dst[2 * j + 1] = 0;
    }
  }
}

at::Tensor pairs_storage(const at::Tensor& storage, int64_t out, int64_t in) {
  const int64_t numel = packed_bf16_numel(out, in);
  if (!storage.defined()) return at::empty({numel}, at::TensorOptions().dtype(at::kBFloat16));
  if (storage.scalar_type() != at::kBFloat16 || !storage.device().is_cpu() ||
      !storage.is_contiguous() || storage.numel() < numel) {
    throw std::invalid_argument(fmt::format(
        "pack_weight_bf16: storage for a [{}, {}] weight must be a contiguous bfloat16 CPU "
        "tensor of at least {} elements, got {} {} of {}",
        out, in, numel, c10::str(storage.sizes()), c10::toString(storage.scalar_type()),
        storage.numel()));
  }
  return storage.view({-1}).narrow(0, 0, numel);
}

// The single build `path` stands for on this CPU, or an error naming what
// the CPU lacks.
Bf16Path resolve_build(Bf16Path path, const char* caller) {
  const Bf16Path widen = cpu_has_avx512() ? Bf16Path::kWidenAvx512
                         : cpu_has_avx2() ? Bf16Path::kWidenAvx2
                                          : Bf16Path::kWidenBaseline;
  if (path == Bf16Path::kExact) return widen;
  if (path == Bf16Path::kFast) return cpu_has_avx512_bf16() ? Bf16Path::kDotAvx512Bf16 : widen;
  if (!bf16_path_available(path)) {
    throw std::invalid_argument(fmt::format(
        "{}: this CPU does not run the {} build (or VITRINE_NO_AVX2 / VITRINE_NO_AVX512 / "
        "VITRINE_NO_AVX512_BF16 turned it off); use exact or fast",
        caller, bf16_path_name(path)));
  }
  return path;
}

void check_operand(const at::Tensor& t, int64_t width, const PackedWeightBf16& w,
                   const char* caller, const char* name) {
  if (!w.defined())
    throw std::invalid_argument(fmt::format("{}: the weight is not packed", caller));
  if (!t.defined() || !t.device().is_cpu() || t.scalar_type() != at::kFloat || t.dim() < 1 ||
      t.size(-1) != width) {
    throw std::invalid_argument(fmt::format(
        "{}: {} {} {} does not fit a weight [{}, {}] (float32 CPU, last dimension {})", caller,
        name, t.defined() ? c10::str(t.sizes()) : "undefined",
        t.defined() ? c10::toString(t.scalar_type()) : "", w.out_features, w.in_features, width));
  }
}

// An empty tensor shaped as t with its last dimension `width`.
at::Tensor with_last_dim(const at::Tensor& t, int64_t width) {
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  shape.back() = width;
  return at::empty(shape, t.options());
}

// The forward on [rows, in] contiguous float32 x into y [rows, out].
void run_forward(Bf16Path build, const at::Tensor& x, int64_t rows, const PackedWeightBf16& w,
                 float* y) {
  const int64_t in = w.in_features, in2 = pair_count(in);
  bf16_kernels::ForwardOperands op;
  op.pairs = pair_words(w);
  op.y = y;
  op.in2 = in2;
  op.out = w.out_features;
  at::Tensor xb, padded;
  if (build == Bf16Path::kDotAvx512Bf16) {
    xb = at::empty({rows, 2 * in2}, x.options().dtype(at::kBFloat16));  // [rows, in2, 2]
    uint16_t* halves = reinterpret_cast<uint16_t*>(xb.data_ptr<at::BFloat16>());
    const float* xp = x.data_ptr<float>();
    // Rows of at least ~64k values per chunk, as the products' grain.
    kernel_parallel_for(0, rows, simd::grain_for(in), [&](int64_t begin, int64_t end) {
      bf16_kernels::round_rows_to_bf16(xp, in, begin, end, halves, in2);
    });
    op.xb = reinterpret_cast<const uint32_t*>(halves);
  } else {
    // The widening kernels read activations by pairs: an odd width gets a
    // zero column, which meets the weights' zero pad.
    padded = in % 2 == 0 ? x : at::constant_pad_nd(x.view({rows, in}), {0, 1});
    op.x = padded.data_ptr<float>();
    op.x_stride = 2 * in2;
  }
  const bf16_kernels::ForwardBuild kernel = bf16_kernels::forward_build(build);
  const int64_t panels = panel_count(w.out_features);
  const int64_t groups = (panels + kernel.group - 1) / kernel.group;
  const int64_t work = kernel.group * kPanel * rows * in;
  kernel_parallel_for(0, groups, simd::grain_for(work), [&](int64_t begin, int64_t end) {
    kernel.run(op, rows, begin * kernel.group, std::min(end * kernel.group, panels));
  });
}

}  // namespace

bool cpu_has_avx512_bf16() {
  static const bool has = cpu_has_avx512() && __builtin_cpu_supports("avx512bf16") &&
                          std::getenv("VITRINE_NO_AVX512_BF16") == nullptr;
  return has;
}

std::string_view bf16_path_name(Bf16Path path) {
  switch (path) {
    case Bf16Path::kExact:
      return "exact";
    case Bf16Path::kFast:
      return "fast";
    case Bf16Path::kDotAvx512Bf16:
      return "dot-avx512bf16";
    case Bf16Path::kWidenAvx512:
      return "widen-avx512";
    case Bf16Path::kWidenAvx2:
      return "widen-avx2";
    case Bf16Path::kWidenBaseline:
      return "widen-baseline";
  }
  return "unknown";
}

bool bf16_path_available(Bf16Path path) {
  switch (path) {
    case Bf16Path::kDotAvx512Bf16:
      return cpu_has_avx512_bf16();
    case Bf16Path::kWidenAvx512:
      return cpu_has_avx512();
    case Bf16Path::kWidenAvx2:
      return cpu_has_avx2();
    default:
      return true;
  }
}

bool packing_bf16_applies(const at::Tensor& w) {
  return w.defined() && w.dim() == 2 && w.device().is_cpu() &&
         (w.scalar_type() == at::kFloat || w.scalar_type() == at::kBFloat16 ||
          w.scalar_type() == at::kHalf);
}

int64_t packed_bf16_numel(int64_t out_features, int64_t in_features) {
  return panel_count(out_features) * pair_count(in_features) * kPanel * 2;
}

PackedWeightBf16 pack_weight_bf16(const at::Tensor& w, const at::Tensor& storage) {
  if (!packing_bf16_applies(w)) {
    throw std::invalid_argument(fmt::format(
        "pack_weight_bf16: expected a 2-D float32, bfloat16 or float16 CPU weight, got {} {} on {}",
        w.defined() ? c10::str(w.sizes()) : "undefined",
        w.defined() ? c10::toString(w.scalar_type()) : "",
        w.defined() ? c10::str(w.device()) : ""));
  }
  const int64_t out = w.size(0), in = w.size(1), panels = panel_count(out);
  PackedWeightBf16 packed{pairs_storage(storage, out, in), out, in};
  packed.pairs = packed.pairs.view({panels, pair_count(in), kPanel, 2});
  const at::Tensor wc = w.contiguous();
  uint16_t* pairs = reinterpret_cast<uint16_t*>(packed.pairs.data_ptr<at::BFloat16>());
  kernel_parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
    if (wc.scalar_type() == at::kFloat) {
      pack_panels(wc.data_ptr<float>(), out, in, begin, end, pairs, bf16_from_float);
    } else if (wc.scalar_type() == at::kHalf) {
      pack_panels(wc.data_ptr<at::Half>(), out, in, begin, end, pairs,
                  [](at::Half h) { return bf16_from_float(static_cast<float>(h)); });
    } else {
      const auto* bits = reinterpret_cast<const uint16_t*>(wc.data_ptr<at::BFloat16>());
      pack_panels(bits, out, in, begin, end, pairs, [](uint16_t b) { return b; });
    }
  });
  return packed;
}

at::Tensor unpack_weight_bf16(const PackedWeightBf16& w) {
  return w.pairs.permute({0, 2, 1, 3})
      .reshape({-1, 2 * pair_count(w.in_features)})
      .narrow(0, 0, w.out_features)
      .narrow(1, 0, w.in_features)
      .contiguous();  // [out, in] bfloat16
}

at::Tensor packed_linear_bf16(const at::Tensor& x, const PackedWeightBf16& w,
                              const at::Tensor& bias, Bf16Path path) {
  constexpr const char* kCaller = "packed_linear_bf16";
  RECORD_USER_SCOPE("vitrine::packed_linear_bf16");
  check_operand(x, w.in_features, w, kCaller, "input");
  if (bias.defined() && (bias.numel() != w.out_features || bias.scalar_type() != at::kFloat)) {
    throw std::invalid_argument(
        fmt::format("{}: bias {} {} for a weight [{}, {}] (expected {} float32 values)", kCaller,
                    c10::str(bias.sizes()), c10::toString(bias.scalar_type()), w.out_features,
                    w.in_features, w.out_features));
  }
  const Bf16Path build = resolve_build(path, kCaller);
  const at::Tensor xc = x.contiguous();
  at::Tensor y = with_last_dim(x, w.out_features);  // [..., out]
  const int64_t rows = w.in_features == 0 ? 0 : xc.numel() / w.in_features;
  if (w.in_features == 0) {
    y.zero_();  // empty sums
  } else if (rows > 0 && w.out_features > 0) {
    run_forward(build, xc, rows, w, y.data_ptr<float>());
  }
  if (bias.defined()) y.add_(bias.view({-1}));
  return y;
}

at::Tensor packed_linear_bf16_backward_data(const at::Tensor& dy, const PackedWeightBf16& w,
                                            Bf16Path path) {
  constexpr const char* kCaller = "packed_linear_bf16_backward_data";
  RECORD_USER_SCOPE("vitrine::packed_linear_bf16_backward_data");
  check_operand(dy, w.out_features, w, kCaller, "dY");
  const Bf16Path build = resolve_build(path, kCaller);
  at::Tensor dx = with_last_dim(dy, w.in_features);  // [..., in]
  const int64_t out = w.out_features, in = w.in_features, panels = panel_count(out);
  const int64_t rows = out == 0 ? 0 : dy.numel() / out;
  if (out == 0) return dx.zero_();  // empty sums
  if (rows == 0 || in == 0) return dx;
  // The kernel reads dY a panel (16 outputs) at a time: an out that is not
  // a whole number of panels gets zero columns, which meet the weights' pad.
  const at::Tensor dyc = out == panels * kPanel ? dy.contiguous()
                                                : at::constant_pad_nd(dy.reshape({rows, out}),
                                                                      {0, panels * kPanel - out});
  bf16_kernels::BackwardOperands op{dyc.data_ptr<float>(), pair_words(w),  dx.data_ptr<float>(),
                                    panels * kPanel,       pair_count(in), in};
  at::Tensor dyb;
  if (build == Bf16Path::kDotAvx512Bf16) {  // dY's rows as bfloat16 pairs of outputs
    const int64_t width = panels * kPanel;
    dyb = at::empty({rows, width}, dy.options().dtype(at::kBFloat16));
    uint16_t* halves = reinterpret_cast<uint16_t*>(dyb.data_ptr<at::BFloat16>());
    const float* dyp = dyc.data_ptr<float>();
    kernel_parallel_for(0, rows, simd::grain_for(width), [&](int64_t begin, int64_t end) {
      bf16_kernels::round_rows_to_bf16(dyp, width, begin, end, halves, width / 2);
    });
    op.dyb = reinterpret_cast<const uint32_t*>(halves);
  }
  const bf16_kernels::BackwardBuild kernel = bf16_kernels::backward_build(build, rows);
  const int64_t in2 = pair_count(in), groups = (in2 + kernel.group - 1) / kernel.group;
  const int64_t work = kernel.group * 2 * rows * panels * kPanel;
  kernel_parallel_for(0, groups, simd::grain_for(work), [&](int64_t begin, int64_t end) {
    kernel.run(op, rows, begin * kernel.group, std::min(end * kernel.group, in2));
  });
  return dx;
}

}  // namespace vitrine::models
