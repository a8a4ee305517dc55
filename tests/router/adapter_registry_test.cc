// The daemon's adapters: newest versions attached in slots of their own,
// hot reload that never pulls a version from under a request, and broken
// versions reported while the current one keeps serving.
#include "router/adapter_registry.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <limits>
#include <utility>
#include <vector>

#include "models/peft_adapter.h"
#include "models/safetensors.h"
#include "tests/support/temp_dir.h"

namespace vitrine::router {
namespace {

namespace fs = std::filesystem;

TEST(AdapterRegistry, NewVersionsLoadBesideTheOldUntilNobodyHoldsIt) {
  const fs::path fixture = testing::shared_path("fixtures/hf-llama/mha-untied");
  if (!fs::exists(fixture)) GTEST_SKIP() << "../shared fixtures not found";
  testing::TempDir dir;
  fs::create_directories(dir / "describe");
  fs::copy(fixture / "adapter", dir / "describe" / "v1", fs::copy_options::recursive);
  fs::create_directories(dir / "describe" / ".v9.tmp-1");  // half-published: ignored

  models::LlamaForCausalLM model = models::load_llama(fixture);
  models::Engine engine(model, nullptr);
  AdapterRegistry registry(engine, dir.path(), {"describe", "qa"});
  EXPECT_EQ(registry.current("describe"), nullptr);
  AdapterRegistry::ReloadResult r = registry.reload();
  ASSERT_EQ(r.loaded.size(), 1u);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(r.loaded[0].version, 1);
  EXPECT_EQ(registry.current("qa"), nullptr);  // none published: the base model serves qa
  const std::shared_ptr<const LoadedAdapter> v1 = registry.current("describe");
  ASSERT_NE(v1, nullptr);

  auto slots = [&] {
    std::set<int> attached;
    engine.update_model([&](models::LlamaForCausalLM& m) {
      for (auto& [path, module] : m->projections()) {
        for (int s = 0; s < 4; ++s) {
          if (module->has_adapter(s)) attached.insert(s);
        }
      }
    });
    return attached;
  };
  EXPECT_EQ(slots(), std::set<int>{v1->slot});

  // v2 arrives while a request holds v1: both stay attached.
  fs::copy(fixture / "adapter", dir / "describe" / "v2", fs::copy_options::recursive);
  r = registry.reload();
  ASSERT_EQ(r.loaded.size(), 1u);
  EXPECT_EQ(registry.current("describe")->version, 2);
  const int v2_slot = registry.current("describe")->slot;
  EXPECT_NE(v2_slot, v1->slot);
  EXPECT_EQ(slots(), (std::set<int>{v1->slot, v2_slot}));
  EXPECT_TRUE(registry.reload().loaded.empty());  // nothing newer

  // A broken v3 is reported; v2 keeps serving.
  fs::create_directories(dir / "describe" / "v3");
  testing::write_file(dir / "describe" / "v3" / "adapter_config.json", "{\"r\": ");
  r = registry.reload();
  EXPECT_TRUE(r.loaded.empty());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("adapter 'describe' version 3"), std::string::npos) << r.errors[0];
  EXPECT_EQ(registry.current("describe")->version, 2);

  // The request ends: v1's slot is freed.
  const int old_slot = v1->slot;
  const_cast<std::shared_ptr<const LoadedAdapter>&>(v1).reset();
  registry.collect();
  EXPECT_EQ(slots(), std::set<int>{v2_slot});
  EXPECT_NE(old_slot, v2_slot);
}

TEST(AdapterRegistry, AVersionHoldingNanOrInfIsRefusedAndTheCurrentOneServes) {
  const fs::path fixture = testing::shared_path("fixtures/hf-llama/mha-untied");
  if (!fs::exists(fixture)) GTEST_SKIP() << "../shared fixtures not found";
  testing::TempDir dir;
  fs::create_directories(dir / "qa");
  fs::copy(fixture / "adapter", dir / "qa" / "v1", fs::copy_options::recursive);
  models::LlamaForCausalLM model = models::load_llama(fixture);
  models::Engine engine(model, nullptr);
  AdapterRegistry registry(engine, dir.path(), {"qa"});
  ASSERT_TRUE(registry.reload().errors.empty());
  // v2 published with one weight NaN, v3 with one Inf: hot reload refuses
  // both by name (the first sampled request would have ended the daemon).
  const models::SafetensorsFile file =
      models::SafetensorsFile::open(fixture / "adapter" / "adapter_model.safetensors");
  for (const auto& [version, bad] :
       {std::pair{2, std::numeric_limits<float>::quiet_NaN()},
        std::pair{3, std::numeric_limits<float>::infinity()}}) {
    const fs::path v = dir / "qa" / fmt::format("v{}", version);
    fs::copy(fixture / "adapter", v, fs::copy_options::recursive);
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const std::string& name : file.names()) tensors.emplace_back(name, file.get(name).clone());
    tensors.front().second.view(-1)[0] = bad;
    models::save_safetensors(v / "adapter_model.safetensors", tensors);
    const AdapterRegistry::ReloadResult r = registry.reload();
    EXPECT_TRUE(r.loaded.empty());
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_NE(r.errors[0].find(tensors.front().first), std::string::npos) << r.errors[0];
    EXPECT_NE(r.errors[0].find("non-finite"), std::string::npos) << r.errors[0];
    EXPECT_EQ(registry.current("qa")->version, 1);
  }
}

TEST(AdapterRegistry, ARunDirectorysAdaptersAreVersionZero) {
  const fs::path fixture = testing::shared_path("fixtures/hf-llama/mha-untied");
  if (!fs::exists(fixture)) GTEST_SKIP() << "../shared fixtures not found";
  testing::TempDir dir;
  fs::copy(fixture / "adapter", dir / "qa", fs::copy_options::recursive);
  const auto [version, path] = newest_version(dir.path(), "qa");
  EXPECT_EQ(version, 0);
  EXPECT_EQ(path, dir / "qa");
  EXPECT_EQ(newest_version(dir.path(), "describe").first, -1);
}

}  // namespace
}  // namespace vitrine::router
