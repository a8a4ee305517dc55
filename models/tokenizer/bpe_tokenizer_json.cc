// Reading tokenizer.json (Hugging Face tokenizers) and GPT-2's
// encoder.json + vocab.bpe into a BpeTokenizerSpec; see bpe_tokenizer.h.
//
// Every component is checked against what BpeTokenizer implements; anything
// else is refused with the file, the JSON key and the offending type.
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

#include "common/text_file.h"
#include "models/tokenizer/bpe_tokenizer.h"

namespace vitrine::models {
namespace {

using nlohmann::json;

constexpr std::string_view kMetaspace = "\xE2\x96\x81";

json read_json(const std::filesystem::path& path) {
  try {
    return json::parse(read_whole_file(path, "tokenizer"));
  } catch (const json::exception& e) {
    throw std::runtime_error(path.string() + ": not valid JSON (" + e.what() + ")");
  }
}

[[noreturn]] void refuse(const std::string& source, const std::string& key,
                         const std::string& what) {
  throw std::runtime_error(
      source + ": " + key + ": " + what +
      " is not supported (supported: BPE models with ByteLevel, Split(Regex, Isolated) "
      "or Metaspace pre-tokenizers; NFC, Prepend and Replace normalizers)");
}

std::string type_of(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>()
                                                                      : "?";
}

void read_normalizer(const json& j, const std::string& source, BpeTokenizerSpec& spec) {
  if (j.is_null()) return;
  const std::string type = type_of(j);
  if (type == "Sequence") {
    for (const json& step : j.at("normalizers")) read_normalizer(step, source, spec);
  } else if (type == "NFC") {
    // Accepted as identity: prompts are NFC in practice (the web and our
    // dataset pipeline produce NFC); a real NFC pass needs Unicode tables.
  } else if (type == "Prepend") {
    spec.normalizers.push_back(
        {BpeNormalizerStep::Kind::kPrepend, "", j.at("prepend").get<std::string>()});
  } else if (type == "Replace" && j.at("pattern").contains("String")) {
    spec.normalizers.push_back({BpeNormalizerStep::Kind::kReplace,
                                j["pattern"]["String"].get<std::string>(),
                                j.at("content").get<std::string>()});
  } else {
    refuse(source, "normalizer",
           "type '" + type + "'" + (type == "Replace" ? " with a Regex pattern" : ""));
  }
}

// Quotes `literal` for PCRE2.
std::string regex_quote(const std::string& literal) {
  std::string out;
  for (const char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

void read_pre_tokenizer(const json& j, const std::string& source, BpeTokenizerSpec& spec) {
  if (j.is_null()) return;
  const std::string type = type_of(j);
  BpePreTokenizerStep step;
  if (type == "Sequence") {
    for (const json& s : j.at("pretokenizers")) read_pre_tokenizer(s, source, spec);
    return;
  } else if (type == "Split") {
    if (j.value("behavior", "") != "Isolated" || j.value("invert", false))
      refuse(source, "pre_tokenizer",
             "Split with behavior '" + j.value("behavior", "") + "'/invert");
    step.kind = BpePreTokenizerStep::Kind::kSplitRegex;
    const json& pattern = j.at("pattern");
    step.pattern = pattern.contains("Regex") ? pattern["Regex"].get<std::string>()
                                             : regex_quote(pattern.at("String").get<std::string>());
  } else if (type == "ByteLevel") {
    step.kind = BpePreTokenizerStep::Kind::kByteLevel;
    step.use_regex = j.value("use_regex", true);
    step.add_prefix_space = j.value("add_prefix_space", false);
  } else if (type == "Metaspace") {
    step.kind = BpePreTokenizerStep::Kind::kMetaspace;
    if (j.value("replacement", std::string(kMetaspace)) != kMetaspace)
      refuse(source, "pre_tokenizer", "Metaspace with a replacement other than U+2581");
    const std::string scheme =
        j.value("prepend_scheme", j.value("add_prefix_space", true) ? "always" : "never");
    if (scheme != "always" && scheme != "first" && scheme != "never")
      refuse(source, "pre_tokenizer", "Metaspace prepend_scheme '" + scheme + "'");
    step.add_prefix_space = scheme != "never";
    step.prepend_first_only = scheme == "first";
    step.split = j.value("split", true);
  } else {
    refuse(source, "pre_tokenizer", "type '" + type + "'");
  }
  spec.pre_tokenizers.push_back(std::move(step));
}

void read_decoder(const json& j, const std::string& source, BpeTokenizerSpec& spec) {
  if (j.is_null()) return;
  const std::string type = type_of(j);
  if (type == "Sequence") {
    for (const json& d : j.at("decoders")) read_decoder(d, source, spec);
  } else if (type == "ByteLevel") {
    spec.byte_level_decode = true;
  } else if (type == "Metaspace") {
    spec.metaspace_decode = true;
    spec.strip_leading_space =
        j.value("prepend_scheme", j.value("add_prefix_space", true) ? "always" : "never") !=
        "never";
  } else if (type == "Replace" && j.at("pattern").contains("String") &&
             j["pattern"]["String"] == kMetaspace && j.value("content", "") == " ") {
    spec.metaspace_decode = true;
  } else if (type == "ByteFallback" || type == "Fuse") {
    // Byte pieces are always reassembled; fusing is implicit in decoding to one string.
  } else if (type == "Strip" && j.value("content", "") == " ") {
    spec.strip_leading_space = j.value("start", 0) > 0;
  } else {
    refuse(source, "decoder", "type '" + type + "'");
  }
}

// A token id: an integer from 0 to 10 million. Anything else (a float, a
// string, 1e300) throws std::runtime_error "<where> has id <value>"; a float
// is never converted, since a huge one would not fit any integer.
int32_t token_id(const json& id, const std::string& where) {
  if (id.is_number_integer()) {
    const auto value = id.get<int64_t>();
    const bool too_big = id.is_number_unsigned() && id.get<uint64_t>() > 10'000'000;
    if (!too_big && value >= 0 && value <= 10'000'000) return static_cast<int32_t>(value);
  }
  throw std::runtime_error(where + " has id " + id.dump());
}

// "<s>" or {"content": "<s>", ...} -> the string, "" for null.
std::string token_text(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string())
    return j["content"].get<std::string>();
  return {};
}

int32_t find_id(const BpeTokenizerSpec& spec, const std::string& text) {
  if (text.empty()) return -1;
  for (const BpeAddedToken& t : spec.added_tokens)
    if (t.content == text) return t.id;
  for (size_t i = 0; i < spec.vocab.size(); ++i)
    if (spec.vocab[i] == text) return static_cast<int32_t>(i);
  return -1;
}

void add_ids(const json& j, std::set<int32_t>& out) {
  if (j.is_number_integer()) out.insert(j.get<int32_t>());
  if (j.is_array())
    for (const json& v : j)
      if (v.is_number_integer()) out.insert(v.get<int32_t>());
}

// bos/eos from tokenizer_config.json, generation_config.json and config.json.
void read_special_ids(const std::filesystem::path& dir, BpeTokenizerSpec& spec) {
  if (dir.empty()) return;
  std::set<int32_t> eos;
  if (std::filesystem::exists(dir / "tokenizer_config.json")) {
    const json config = read_json(dir / "tokenizer_config.json");
    if (config.contains("bos_token") && config.value("add_bos_token", true))
      spec.bos_id = find_id(spec, token_text(config["bos_token"]));
    if (config.contains("eos_token")) {
      const int32_t id = find_id(spec, token_text(config["eos_token"]));
      if (id >= 0) eos.insert(id);
    }
  }
  for (const char* name : {"generation_config.json", "config.json"}) {
    if (!std::filesystem::exists(dir / name)) continue;
    const json config = read_json(dir / name);
    if (config.contains("eos_token_id")) add_ids(config["eos_token_id"], eos);
  }
  if (!eos.empty()) spec.eos_ids.assign(eos.begin(), eos.end());
}

}  // namespace

BpeTokenizerSpec read_tokenizer_json(const std::filesystem::path& path,
                                     const std::filesystem::path& config_dir) {
  BpeTokenizerSpec spec;
  spec.source = path.string();
  const json root = read_json(path);
  try {
    const json& model = root.at("model");
    const std::string model_type = model.value("type", "BPE");
    if (model_type != "BPE") refuse(spec.source, "model.type", "'" + model_type + "'");
    if (model.contains("dropout") && model["dropout"].is_number() &&
        model["dropout"].get<double>() > 0)
      refuse(spec.source, "model.dropout", "BPE dropout");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty())
        refuse(spec.source, std::string("model.") + key, "a non-empty value");
    for (const auto& [piece, id] : model.at("vocab").items()) {
      const int32_t index = token_id(id, spec.source + ": model.vocab['" + piece + "']");
      if (static_cast<size_t>(index) >= spec.vocab.size())
        spec.vocab.resize(static_cast<size_t>(index) + 1);
      spec.vocab[static_cast<size_t>(index)] = piece;
    }
    for (const json& merge : model.at("merges")) {
      if (merge.is_array() && merge.size() == 2) {
        spec.merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
        continue;
      }
      const std::string text = merge.get<std::string>();
      const size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
        throw std::runtime_error(spec.source + ": model.merges entry '" + text +
                                 "' is not two pieces separated by one space");
      spec.merges.emplace_back(text.substr(0, space), text.substr(space + 1));
    }
    spec.byte_fallback = model.value("byte_fallback", false);
    spec.ignore_merges = model.value("ignore_merges", false);
    spec.fuse_unk = model.value("fuse_unk", false);
    if (model.contains("unk_token") && model["unk_token"].is_string())
      spec.unk_token = model["unk_token"].get<std::string>();
    if (root.contains("added_tokens")) {
      for (const json& t : root["added_tokens"]) {
        spec.added_tokens.push_back({token_id(t.at("id"), spec.source + ": added_tokens entry"),
                                     t.at("content").get<std::string>(), t.value("special", false),
                                     t.value("lstrip", false), t.value("rstrip", false)});
      }
    }
    read_normalizer(root.value("normalizer", json()), spec.source, spec);
    read_pre_tokenizer(root.value("pre_tokenizer", json()), spec.source, spec);
    read_decoder(root.value("decoder", json()), spec.source, spec);
  } catch (const json::exception& e) {
    throw std::runtime_error(spec.source + ": unexpected tokenizer.json structure (" + e.what() +
                             "); is this a Hugging Face tokenizers file?");
  }
  if (!spec.byte_level_decode && !spec.metaspace_decode) {
    const bool byte_level =
        std::any_of(spec.pre_tokenizers.begin(), spec.pre_tokenizers.end(),
                    [](const auto& s) { return s.kind == BpePreTokenizerStep::Kind::kByteLevel; });
    if (byte_level) spec.byte_level_decode = true;
  }
  read_special_ids(config_dir, spec);
  return spec;
}

BpeTokenizerSpec read_gpt2_bpe_files(const std::filesystem::path& encoder_json,
                                     const std::filesystem::path& vocab_bpe) {
  BpeTokenizerSpec spec;
  spec.source = encoder_json.string();
  const json encoder = read_json(encoder_json);
  if (!encoder.is_object())
    throw std::runtime_error(spec.source + ": expected a JSON object of piece -> id");
  for (const auto& [piece, id] : encoder.items()) {
    const int32_t index = token_id(id, spec.source + ": bad id for '" + piece + "'");
    if (static_cast<size_t>(index) >= spec.vocab.size())
      spec.vocab.resize(static_cast<size_t>(index) + 1);
    spec.vocab[static_cast<size_t>(index)] = piece;
  }
  std::istringstream lines(read_whole_file(vocab_bpe, "tokenizer"));
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line.starts_with("#version")) continue;
    const size_t space = line.find(' ');
    if (space == std::string::npos)
      throw std::runtime_error(vocab_bpe.string() + ": merge line '" + line + "' has no space");
    spec.merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  BpePreTokenizerStep byte_level;
  byte_level.kind = BpePreTokenizerStep::Kind::kByteLevel;
  byte_level.use_regex = true;
  spec.pre_tokenizers.push_back(byte_level);
  spec.byte_level_decode = true;
  const int32_t eot = find_id(spec, "<|endoftext|>");
  if (eot >= 0) {
    spec.added_tokens.push_back({eot, "<|endoftext|>", true, false, false});
    spec.bos_id = eot;
    spec.eos_ids = {eot};
  }
  return spec;
}

}  // namespace vitrine::models
