// Decoding HTML character references exactly as Python 3.11's html.unescape.
//
// The study's pipeline ran html.unescape on every title and content, so the
// output here must match it byte for byte, quirks included: the HTML5
// "invalid charref" table (&#150; is an en dash, &#0; is U+FFFD), code points
// that decode to nothing (&#x7F;, &#xFFFE;), legacy names matched without ';'
// as a prefix (&copy2019 -> ©2019, &notit; -> ¬it;), names of at most 32 code
// points. It runs on ~1 GB of text, so text without '&' costs one memchr and
// one append, and the 2231 entity names are a generated sorted table searched
// in place (no allocation, no start-up cost).
//
// Not a goal: HTML parsing (tags, attributes, CDATA), entities outside
// Python's html.entities.html5, or repairing invalid UTF-8 (see utf8.h).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace vitrine {

// Appends the decoded form of UTF-8 `in` to `out`. Returns the number of
// character references replaced (0 means `out` got an exact copy of `in`).
size_t html_unescape(std::string_view in, std::string& out);

}  // namespace vitrine
