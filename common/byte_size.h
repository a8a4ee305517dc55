// Sizes written by people ("500MB", "2GB", "1GiB", "123456"), as
// transformers' save_pretrained(max_shard_size=...) reads them: decimal
// units KB/MB/GB/TB are powers of 1000, binary KiB/MiB/GiB/TiB powers of
// 1024, a bare number is bytes. Not goals: fractions ("1.5GB") and
// transformers' bits ("5Gb" = 5e9 / 8 bytes there), which are refused by
// name rather than read one way or the other.
#pragma once

#include <cstdint>
#include <string_view>

namespace vitrine {

// The size in bytes (> 0). Throws std::invalid_argument naming `text` and
// the accepted forms when it is not one of them or does not fit in 63 bits.
int64_t parse_byte_size(std::string_view text);

}  // namespace vitrine
