// YAML config files -> JSON, at the program's edge. Libraries take JSON (or
// their option structs) and never include yaml-cpp.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>

namespace vitrine {

// Reads a YAML file into JSON. Scalars become booleans (true/false), integers,
// floats or strings, in that order of preference; quoted scalars stay strings.
// Throws std::runtime_error naming the file, line and column of a syntax error.
nlohmann::json load_yaml_as_json(const std::filesystem::path& path);

}  // namespace vitrine
