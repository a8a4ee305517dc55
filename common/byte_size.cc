#include "common/byte_size.h"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/strings.h"

namespace vitrine {
namespace {

[[noreturn]] void refuse(std::string_view text, std::string_view why) {
  throw std::invalid_argument(
      fmt::format("size '{}' {}: write a whole number of bytes, or one with a unit: KB, MB, GB, TB "
                  "(powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. 500MB or 2GB",
                  text, why));
}

}  // namespace

int64_t parse_byte_size(std::string_view text) {
  const std::string_view s = trim(text);
  int64_t number = 0;
  const auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), number);
  if (error == std::errc::result_out_of_range) refuse(text, "is too large");
  if (error != std::errc() || end == s.data()) refuse(text, "does not start with a number");
  const std::string_view unit = trim(s.substr(static_cast<size_t>(end - s.data())));
  if (!unit.empty() && unit.front() == '.') refuse(text, "has a fraction");
  // "Gb": transformers divides by 8; "GiB", "gib" and "B" are bytes everywhere.
  if (unit.size() == 2 && unit.back() == 'b') {
    refuse(text, "ends in a lowercase b, which transformers reads as bits");
  }
  constexpr int64_t kKilo = 1000, kKibi = 1024;
  static constexpr std::array<std::pair<std::string_view, int64_t>, 9> kUnits = {{
      {"b", 1},
      {"kb", kKilo},
      {"mb", kKilo * kKilo},
      {"gb", kKilo * kKilo * kKilo},
      {"tb", kKilo * kKilo * kKilo * kKilo},
      {"kib", kKibi},
      {"mib", kKibi * kKibi},
      {"gib", kKibi * kKibi * kKibi},
      {"tib", kKibi * kKibi * kKibi * kKibi},
  }};
  int64_t scale = unit.empty() ? 1 : 0;
  for (const auto& [name, factor] : kUnits) {
    if (ascii_iequals(unit, name)) scale = factor;
  }
  if (scale == 0) refuse(text, fmt::format("has an unknown unit '{}'", unit));
  int64_t bytes = 0;
  if (__builtin_mul_overflow(number, scale, &bytes)) refuse(text, "is too large");
  if (bytes <= 0) refuse(text, "is not positive");
  return bytes;
}

}  // namespace vitrine
