// Fuzz target: a whole .safetensors file through SafetensorsFile::open, then
// every tensor through get() and require_finite(), as the model loaders do.
//
// Documented errors are std::runtime_error (malformed file, non-finite
// weights); anything else escaping, a crash or a sanitizer report is a bug.
// Properties: every accepted tensor lies inside the data section, its byte
// count is numel x dtype size, and get() returns that many elements.
#include <stdexcept>

#include "models/safetensors.h"
#include "tests/fuzz/fuzz_support.h"

using namespace vitrine;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::ScratchFile scratch("model.safetensors");
  const auto& path = scratch.write(fuzz::as_text(data, size));
  try {
    const auto file = models::SafetensorsFile::open(path);
    for (const auto& name : file.names()) {
      const auto& info = file.info(name);
      VITRINE_FUZZ_CHECK(info.begin <= info.end && info.end <= size, "tensor inside the file");
      VITRINE_FUZZ_CHECK(
          static_cast<uint64_t>(info.numel()) * models::safetensors_dtype_size(info.dtype) ==
              info.end - info.begin,
          "byte count is numel x dtype size");
      const at::Tensor tensor = file.get(name);
      VITRINE_FUZZ_CHECK(tensor.numel() == info.numel(), "get() returns every element");
      models::require_finite(tensor, name, path);
    }
  } catch (const std::runtime_error&) {
    // A malformed file, refused with a message: the documented outcome.
  }
  return 0;
}
