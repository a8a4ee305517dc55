# Writes OUTPUT, a C++ file defining vitrine::gateway::kWebPage (the bytes
# of INPUT) and kWebPageSize, so the binary serves the page without files.
file(READ ${INPUT} hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUTPUT}.tmp
  "// Generated from ${INPUT} by gateway/embed.cmake.\n"
  "#include <cstddef>\n"
  "namespace vitrine::gateway {\n"
  "extern const unsigned char kWebPage[] = {${bytes} 0};\n"
  "extern const size_t kWebPageSize = ${size};\n"
  "}  // namespace vitrine::gateway\n")
file(RENAME ${OUTPUT}.tmp ${OUTPUT})
