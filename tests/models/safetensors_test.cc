// Tests for models/safetensors: the shared fixtures (HF-written checkpoints
// and PEFT adapters), exact save -> load round trips, F16/BF16 conversion
// from hand-written files, and a clear error for each kind of corrupt input.
#include "models/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "models/llama_config.h"
#include "tests/support/expect_error.h"
#include "tests/support/temp_dir.h"

namespace vitrine::models {
namespace {

namespace fs = std::filesystem;
using vitrine::testing::expect_error;
using vitrine::testing::read_file;
using vitrine::testing::shared_path;
using vitrine::testing::TempDir;
using vitrine::testing::write_file;

// An 8-byte little-endian length, the header, then the data bytes.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  const uint64_t n = header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

template <typename T>
std::string raw_bytes(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

std::vector<fs::path> fixture_models() {
  std::vector<fs::path> out;
  for (const char* name : {"fixtures/hf-llama/mha-untied", "fixtures/hf-llama/gqa-tied",
                           "fixtures/hf-llama/llama3-rope", "models/stories260K-hf"}) {
    if (fs::exists(shared_path(name) / "model.safetensors")) out.push_back(shared_path(name));
  }
  return out;
}

#define SKIP_WITHOUT_SHARED()                                                           \
  if (!fs::exists(shared_path("fixtures/hf-llama"))) {                                  \
    GTEST_SKIP() << "shared fixtures not found at " << shared_path("fixtures/hf-llama") \
                 << " (VITRINE_SHARED_DIR); skipping";                                  \
  }

TEST(SafetensorsTest, ReadsEveryFixtureModelWithShapesFromItsConfig) {
  SKIP_WITHOUT_SHARED();
  const auto models = fixture_models();
  ASSERT_EQ(models.size(), 4u);
  for (const fs::path& dir : models) {
    SCOPED_TRACE(dir.string());
    const LlamaConfig c = load_llama_config(dir);
    const SafetensorsFile file = SafetensorsFile::open(dir / "model.safetensors");
    EXPECT_EQ(file.metadata().at("format"), "pt");
    const int64_t h = c.hidden_size, hd = c.head_dim;
    std::map<std::string, std::vector<int64_t>> want = {
        {"model.embed_tokens.weight", {c.vocab_size, h}},
        {"model.norm.weight", {h}},
    };
    if (!c.tie_word_embeddings) want["lm_head.weight"] = {c.vocab_size, h};
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      want[p + "self_attn.q_proj.weight"] = {c.num_attention_heads * hd, h};
      want[p + "self_attn.k_proj.weight"] = {c.num_key_value_heads * hd, h};
      want[p + "self_attn.v_proj.weight"] = {c.num_key_value_heads * hd, h};
      want[p + "self_attn.o_proj.weight"] = {h, c.num_attention_heads * hd};
      want[p + "mlp.gate_proj.weight"] = {c.intermediate_size, h};
      want[p + "mlp.up_proj.weight"] = {c.intermediate_size, h};
      want[p + "mlp.down_proj.weight"] = {h, c.intermediate_size};
      want[p + "input_layernorm.weight"] = {h};
      want[p + "post_attention_layernorm.weight"] = {h};
    }
    std::vector<std::string> want_names;
    for (const auto& [name, shape] : want) want_names.push_back(name);
    EXPECT_EQ(file.names(), want_names);
    for (const auto& [name, shape] : want) {
      SCOPED_TRACE(name);
      EXPECT_EQ(file.info(name).shape, shape);
      EXPECT_EQ(file.info(name).dtype, SafetensorsDtype::kF32);
      const at::Tensor t = file.get(name);
      EXPECT_EQ(t.scalar_type(), at::kFloat);
      EXPECT_EQ(t.sizes().vec(), shape);
      EXPECT_TRUE(t.isfinite().all().item<bool>());
    }
    // The fixtures' RMSNorm weights are 1 + N(0, 0.1^2) and projections N(0, 0.02^2):
    // the bytes landed in the right tensor. (stories260K is trained: norms just positive.)
    const float norm_mean = file.get("model.norm.weight").mean().item<float>();
    if (dir.string().find("hf-llama") != std::string::npos) {
      EXPECT_NEAR(norm_mean, 1.0f, 0.2f);
    } else {
      EXPECT_GT(norm_mean, 0.0f);
    }
    EXPECT_LT(file.get("model.embed_tokens.weight").abs().mean().item<float>(), 0.5f);
  }
}

TEST(SafetensorsTest, ReadsAdaptersAndGradients) {
  SKIP_WITHOUT_SHARED();
  const fs::path base = shared_path("fixtures/hf-llama");
  const std::vector<std::pair<std::string, std::string>> adapters = {
      {"mha-untied", "mha-untied/adapter/adapter_model.safetensors"},
      {"llama3-rope", "llama3-rope/adapter/adapter_model.safetensors"},
      {"mha-untied", "mha-untied/lora-replay/init/adapter_model.safetensors"},
      {"mha-untied", "mha-untied/lora-replay/final/adapter_model.safetensors"},
      {"mha-untied", "mha-untied/lora-replay/grads_step1.safetensors"},
  };
  for (const auto& [model, rel] : adapters) {
    SCOPED_TRACE(rel);
    const LlamaConfig c = load_llama_config(base / model);
    const SafetensorsFile file = SafetensorsFile::open(base / rel);
    const int64_t r = 8, h = c.hidden_size, q = c.num_attention_heads * c.head_dim,
                  kv = c.num_key_value_heads * c.head_dim, m = c.intermediate_size;
    const std::map<std::string, std::pair<int64_t, int64_t>> in_out = {
        {"self_attn.q_proj", {h, q}}, {"self_attn.k_proj", {h, kv}}, {"self_attn.v_proj", {h, kv}},
        {"self_attn.o_proj", {q, h}}, {"mlp.gate_proj", {h, m}},     {"mlp.up_proj", {h, m}},
        {"mlp.down_proj", {m, h}}};
    EXPECT_EQ(file.size(), static_cast<size_t>(c.num_hidden_layers) * in_out.size() * 2);
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      for (const auto& [module, io] : in_out) {
        const std::string p = "base_model.model.model.layers." + std::to_string(i) + "." + module;
        ASSERT_TRUE(file.contains(p + ".lora_A.weight")) << p;
        EXPECT_EQ(file.info(p + ".lora_A.weight").shape, (std::vector<int64_t>{r, io.first}));
        EXPECT_EQ(file.info(p + ".lora_B.weight").shape, (std::vector<int64_t>{io.second, r}));
        EXPECT_EQ(file.get(p + ".lora_B.weight").scalar_type(), at::kFloat);
      }
    }
  }
  // The trained adapter's B is non-zero (max |B| about 0.17 per the fixture README).
  const SafetensorsFile trained =
      SafetensorsFile::open(base / "mha-untied/adapter/adapter_model.safetensors");
  const float max_b = trained.get("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight")
                          .abs()
                          .max()
                          .item<float>();
  EXPECT_GT(max_b, 0.0f);
  EXPECT_EQ(trained.metadata().at("format"), "pt");
}

TEST(SafetensorsTest, RewritingAFixtureIsByteIdentical) {
  SKIP_WITHOUT_SHARED();
  TempDir tmp;
  for (const fs::path& dir : fixture_models()) {
    SCOPED_TRACE(dir.string());
    const SafetensorsFile file = SafetensorsFile::open(dir / "model.safetensors");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& name : file.names()) tensors.emplace_back(name, file.get(name));
    save_safetensors(tmp / "copy.safetensors", tensors, file.metadata());
    // Same header layout and padding as the reference writer, same bytes.
    EXPECT_TRUE(read_file(tmp / "copy.safetensors") == read_file(dir / "model.safetensors"));
  }
}

TEST(SafetensorsTest, RoundTripIsBitExactForFloat32AndInt64) {
  TempDir tmp;
  at::manual_seed(7);
  at::Tensor weights = at::randn({5, 7});  // [5, 7]
  auto* w = weights.data_ptr<float>();
  w[0] = std::numeric_limits<float>::quiet_NaN();
  w[1] = -0.0f;
  w[2] = std::numeric_limits<float>::infinity();
  w[3] = std::numeric_limits<float>::denorm_min();
  w[4] = std::numeric_limits<float>::max();
  const at::Tensor ids = at::tensor(std::vector<int64_t>{
      0, -1, std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min(), 42});  // [5]
  const at::Tensor transposed = at::randn({3, 4}).t();  // [4, 3], non-contiguous
  const at::Tensor scalar = at::scalar_tensor(3.5);     // [], float64 -> stored as F32
  const at::Tensor empty = at::zeros({0, 3});           // [0, 3]
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"seed", "7"}, {"quote", "a\"b\\c"}};
  save_safetensors(
      tmp / "t.safetensors",
      {{"z.weights", weights}, {"a.ids", ids}, {"m.t", transposed}, {"s", scalar}, {"e", empty}},
      metadata);

  const SafetensorsFile file = SafetensorsFile::open(tmp / "t.safetensors");
  EXPECT_EQ(file.metadata(), metadata);
  EXPECT_EQ(file.names(), (std::vector<std::string>{"a.ids", "e", "m.t", "s", "z.weights"}));
  const at::Tensor w2 = file.get("z.weights");
  ASSERT_EQ(w2.sizes(), weights.sizes());
  EXPECT_EQ(std::memcmp(w2.data_ptr(), weights.data_ptr(), weights.nbytes()), 0);
  const at::Tensor ids2 = file.get("a.ids");
  EXPECT_EQ(ids2.scalar_type(), at::kLong);
  EXPECT_TRUE(at::equal(ids2, ids));
  EXPECT_EQ(file.info("a.ids").dtype, SafetensorsDtype::kI64);
  EXPECT_TRUE(at::equal(file.get("m.t"), transposed.contiguous()));
  EXPECT_EQ(file.get("s").dim(), 0);
  EXPECT_EQ(file.get("s").item<float>(), 3.5f);
  EXPECT_EQ(file.get("e").sizes().vec(), (std::vector<int64_t>{0, 3}));

  // Header: "__metadata__" first, names sorted, padded with spaces to a multiple of 8.
  const std::string bytes = read_file(tmp / "t.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.rfind("{\"__metadata__\":", 0), 0u) << header;
  EXPECT_LT(header.find("\"a.ids\""), header.find("\"z.weights\""));
  EXPECT_EQ(header.find_last_not_of(' '), header.find_last_of('}'));
  // Nothing but the target is left in the directory (written via a temporary + rename).
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1);
}

TEST(SafetensorsTest, BorrowedTensorsOutliveTheFileAndNeverWriteBack) {
  TempDir tmp;
  const at::Tensor original = at::arange(12, at::kFloat).reshape({3, 4});  // [3, 4]
  save_safetensors(tmp / "w.safetensors", {{"w", original}});
  const std::string before = read_file(tmp / "w.safetensors");
  at::Tensor borrowed;
  {
    const SafetensorsFile file = SafetensorsFile::open(tmp / "w.safetensors");
    borrowed = file.get("w");
  }
  EXPECT_TRUE(at::equal(borrowed, original));  // the mapping lives on with the tensor
  borrowed.mul_(2);                            // copy-on-write: no fault, no change on disk
  EXPECT_EQ(read_file(tmp / "w.safetensors"), before);
  EXPECT_TRUE(at::equal(SafetensorsFile::open(tmp / "w.safetensors").get("w"), original));
}

TEST(SafetensorsTest, ConvertsF16Bf16F64AndI32) {
  TempDir tmp;
  // F16: 1, -2, 0.5, 65504 (max), 2^-24 (smallest subnormal), -inf.
  const std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0xFC00};
  // BF16: 1, -2.5, 3.140625, 2^-133 (subnormal), 0x7E96 = 1.171875 * 2^126.
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC020, 0x4049, 0x0001, 0x7E96};
  const std::vector<double> f64 = {0.25, -1e-3};
  const std::vector<int32_t> i32 = {-7, 2147483647};
  std::string data = raw_bytes(f16) + raw_bytes(bf16);  // 12 + 10 bytes
  data += std::string(2, '\0');                         // 24: keeps F64 8-aligned
  data += raw_bytes(f64) + raw_bytes(i32);              // 24..40, 40..48
  const std::string header = R"({"h":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},)"
                             R"("b":{"dtype":"BF16","shape":[5],"data_offsets":[12,22]},)"
                             R"("d":{"dtype":"F64","shape":[2],"data_offsets":[24,40]},)"
                             R"("i":{"dtype":"I32","shape":[2],"data_offsets":[40,48]}})";
  write_file(tmp / "mixed.safetensors", safetensors_bytes(header, data));
  const SafetensorsFile file = SafetensorsFile::open(tmp / "mixed.safetensors");
  EXPECT_TRUE(file.metadata().empty());

  const at::Tensor h = file.get("h");
  EXPECT_EQ(h.scalar_type(), at::kFloat);
  EXPECT_EQ(h.sizes().vec(), (std::vector<int64_t>{2, 3}));
  const std::vector<float> want_h = {
      1.0f, -2.0f, 0.5f, 65504.0f, std::ldexp(1.0f, -24), -std::numeric_limits<float>::infinity()};
  for (size_t k = 0; k < want_h.size(); ++k)
    EXPECT_EQ(h.flatten()[k].item<float>(), want_h[k]) << k;

  const at::Tensor b = file.get("b");
  EXPECT_EQ(file.info("b").dtype, SafetensorsDtype::kBF16);
  const std::vector<float> want_b = {1.0f, -2.5f, 3.140625f, std::ldexp(1.0f, -133), 0x1.2Cp+126f};
  for (size_t k = 0; k < want_b.size(); ++k) EXPECT_EQ(b[k].item<float>(), want_b[k]) << k;

  EXPECT_EQ(file.get("d").scalar_type(), at::kFloat);
  EXPECT_EQ(file.get("d")[0].item<float>(), 0.25f);
  EXPECT_EQ(file.get("d")[1].item<float>(), static_cast<float>(-1e-3));
  const at::Tensor i = file.get("i");
  EXPECT_EQ(i.scalar_type(), at::kLong);
  EXPECT_EQ(i[0].item<int64_t>(), -7);
  EXPECT_EQ(i[1].item<int64_t>(), 2147483647);
}

TEST(SafetensorsTest, UnalignedDataIsCopiedNotMisread) {
  TempDir tmp;
  const std::vector<float> values = {1.5f, -2.25f};
  // A 9-byte header puts the data section at offset 17: not 4-aligned.
  const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string padded = header;
  while ((8 + padded.size()) % 4 == 0) padded += ' ';
  write_file(tmp / "u.safetensors", safetensors_bytes(padded, raw_bytes(values)));
  const at::Tensor x = SafetensorsFile::open(tmp / "u.safetensors").get("x");
  EXPECT_EQ(x[0].item<float>(), 1.5f);
  EXPECT_EQ(x[1].item<float>(), -2.25f);
}

// Each corrupt file gives an error naming the file and the problem.
TEST(SafetensorsTest, CorruptInputsGiveClearErrors) {
  TempDir tmp;
  const std::string data(16, '\0');
  auto check = [&](const std::string& label, const std::string& bytes,
                   const std::vector<std::string>& parts) {
    SCOPED_TRACE(label);
    const fs::path p = tmp / (label + ".safetensors");
    write_file(p, bytes);
    std::vector<std::string> all = parts;
    all.push_back(p.string());
    expect_error([&] { SafetensorsFile::open(p); }, all);
  };
  auto with_header = [&](const std::string& header) { return safetensors_bytes(header, data); };
  auto tensor = [](const std::string& name, const std::string& dtype, const std::string& shape,
                   const std::string& offsets) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
           ",\"data_offsets\":" + offsets + "}";
  };

  check("empty", "", {"shorter than the 8-byte header length"});
  check("short", "abc", {"shorter than the 8-byte header length"});
  {
    std::string past = safetensors_bytes("{}", "");
    const uint64_t n = 1000;
    std::memcpy(past.data(), &n, 8);
    check("header-past-end", past, {"header length 1000", "past the end of the file"});
    const uint64_t huge = 200'000'000;
    std::memcpy(past.data(), &huge, 8);
    check("header-huge", past, {"exceeds the 100 MB limit"});
  }
  check("not-json", with_header("{\"a\": [1, 2"), {"not valid JSON"});
  check("not-object", with_header("[1, 2, 3]"), {"not a JSON object"});
  check("entry-not-object", with_header("{\"w\": 3}"), {"'w'", "not an object"});
  check("unknown-dtype", with_header("{" + tensor("w", "F33", "[4]", "[0,16]") + "}"),
        {"'w'", "unknown or unsupported dtype 'F33'"});
  check("missing-dtype", with_header(R"({"w":{"shape":[4],"data_offsets":[0,16]}})"),
        {"'w'", "dtype"});
  check("negative-shape", with_header("{" + tensor("w", "F32", "[-4]", "[0,16]") + "}"),
        {"'w'", "not a non-negative integer"});
  check("float-shape", with_header("{" + tensor("w", "F32", "[4.0]", "[0,16]") + "}"),
        {"'w'", "not a non-negative integer"});
  check("shape-overflow",
        with_header("{" + tensor("w", "F32", "[4294967296,4294967296]", "[0,16]") + "}"),
        {"'w'", "overflows"});
  check("bad-offsets", with_header("{" + tensor("w", "F32", "[4]", "[0]") + "}"),
        {"'w'", "[begin, end]"});
  check("reversed-offsets", with_header("{" + tensor("w", "F32", "[0]", "[8,4]") + "}"),
        {"'w'", "begin > end"});
  check("offsets-past-end", with_header("{" + tensor("w", "F32", "[8]", "[0,32]") + "}"),
        {"'w'", "end past the data section (16 bytes)"});
  check("size-mismatch", with_header("{" + tensor("w", "F32", "[3]", "[0,16]") + "}"),
        {"'w'", "size mismatch", "needs 12 bytes", "span 16"});
  check("overlap",
        with_header("{" + tensor("a", "F32", "[3]", "[0,12]") + "," +
                    tensor("b", "F32", "[2]", "[8,16]") + "}"),
        {"'a'", "'b'", "overlapping"});
  check("metadata-not-string", with_header(R"({"__metadata__":{"format":1}})"),
        {"__metadata__", "'format'", "not a string"});
  check("metadata-not-object", with_header(R"({"__metadata__":"pt"})"), {"__metadata__"});

  expect_error([&] { SafetensorsFile::open(tmp / "absent.safetensors"); },
               {"absent.safetensors", "cannot open"});
  expect_error([&] { SafetensorsFile::open(tmp.path()); }, {"not a regular file"});

  // A real checkpoint cut short: the last tensors end past the data section.
  if (fs::exists(shared_path("fixtures/hf-llama/gqa-tied/model.safetensors"))) {
    const std::string whole =
        read_file(shared_path("fixtures/hf-llama/gqa-tied/model.safetensors"));
    check("truncated-fixture", whole.substr(0, whole.size() / 2),
          {"end past the data section", "truncated"});
    check("truncated-in-header", whole.substr(0, 100), {"past the end of the file"});
  }
}

// Random damage to a small valid file: every variant either opens (and then
// every tensor reads) or throws std::runtime_error; nothing crashes.
TEST(SafetensorsTest, DamagedFilesNeverCrash) {
  TempDir tmp;
  save_safetensors(tmp / "good.safetensors", {{"a", at::arange(6, at::kFloat).reshape({2, 3})},
                                              {"b", at::arange(4, at::kLong)},
                                              {"c", at::ones({1})}});
  const std::string good = read_file(tmp / "good.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, good.data(), 8);
  const fs::path p = tmp / "damaged.safetensors";
  uint64_t state = 12345;  // a fixed-seed LCG: the same damage every run
  auto next = [&](uint64_t bound) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (state >> 33) % bound;
  };
  const std::string alphabet = "{}[],:\"0123456789-. eFIU_a";
  int opened = 0;
  for (int round = 0; round < 600; ++round) {
    std::string bytes = good;
    switch (round % 3) {
      case 0:  // truncate anywhere
        bytes.resize(next(bytes.size()));
        break;
      case 1:  // a JSON-ish character anywhere in the prefix + header
        bytes[next(8 + n)] = alphabet[next(alphabet.size())];
        break;
      default:  // a random byte anywhere in the prefix + header
        bytes[next(8 + n)] = static_cast<char>(next(256));
        break;
    }
    write_file(p, bytes);
    try {
      const SafetensorsFile file = SafetensorsFile::open(p);
      for (const auto& name : file.names()) {
        EXPECT_EQ(file.get(name).numel(), file.info(name).numel());
      }
      ++opened;
    } catch (const std::runtime_error&) {
      // expected for most variants
    }
  }
  EXPECT_GT(opened, 0);  // some damage is harmless (e.g. inside padding or a digit swap)
}

TEST(SafetensorsTest, MissingTensorAndBadSaveInputsAreNamed) {
  TempDir tmp;
  save_safetensors(tmp / "one.safetensors", {{"w", at::ones({2})}});
  const SafetensorsFile file = SafetensorsFile::open(tmp / "one.safetensors");
  EXPECT_FALSE(file.contains("v"));
  expect_error([&] { file.get("v"); }, {"one.safetensors", "'v'", "not in file"});
  expect_error(
      [&] {
        save_safetensors(tmp / "bad.safetensors", {{"w", at::ones({2})}, {"w", at::ones({2})}});
      },
      {"bad.safetensors", "'w'", "twice"});
  expect_error(
      [&] {
        save_safetensors(tmp / "bad.safetensors", {{"w", at::ones({2}, at::kInt)}});
      },
      {"'w'", "dtype"});
  expect_error(
      [&] {
        save_safetensors(tmp / "bad.safetensors", {{"__metadata__", at::ones({2})}});
      },
      {"invalid tensor name"});
  EXPECT_FALSE(fs::exists(tmp / "bad.safetensors"));
}

}  // namespace
}  // namespace vitrine::models
