// A small hand-made catalogue for the agents' tests: titles that read like
// questions, editions that share words, a Portuguese title.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "../support/temp_dir.h"
#include "agents/agent_results.h"
#include "catalog/catalog.h"

namespace vitrine::agents::testing {

struct HandProduct {
  std::string uid, title, content;
};

inline std::vector<HandProduct> hand_products() {
  return {
      {"0399144463", "Who Moved My Cheese?",
       "A parable about change, mice and little people in a maze."},
      {"0439136350", "Harry Potter and the Prisoner of Azkaban",
       "Harry's third year at Hogwarts, where a prisoner has escaped from Azkaban."},
      {"0439136369", "Harry Potter and the Prisoner of Azkaban (Book 3) Illustrated Edition",
       "The third book with full-colour illustrations."},
      {"B000WORKS1", "How Things Work", "An introduction to physics for curious readers."},
      {"B00KETTLE1", "Stainless Steel Electric Kettle 1.7 Liter",
       "Boils water in three minutes. Automatic shut-off. 1500 watts."},
      {"B0000EMPTY", "Plain Title With Empty Content", ""},
  };
}

// Writes hand_products() as a finished catalogue at `path`.
inline void write_hand_catalog(const std::filesystem::path& path) {
  catalog::CatalogWriter writer(path);
  uint64_t line = 0;
  for (const HandProduct& p : hand_products()) {
    writer.add(catalog::Product{.uid = p.uid, .title = p.title, .content = p.content, .line = ++line});
  }
  writer.finish();
}

// `p` asks `task`'s adapter exactly what it was tuned on, for `input`.
inline void expect_training_prompt(const AgentPrompt& p, Task task, std::string_view input) {
  const models::ChatTurn trained = task_turn(task, input);
  EXPECT_EQ(p.task, task);
  EXPECT_EQ(p.turn.system, trained.system);
  EXPECT_EQ(p.turn.user, trained.user);
  EXPECT_FALSE(p.grounded);
}

// A test with the hand-made catalogue open in catalog_.
class HandCatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_hand_catalog(dir_ / "catalog.sqlite");
    catalog_ = std::make_shared<const Catalog>(dir_ / "catalog.sqlite");
  }
  vitrine::testing::TempDir dir_;
  std::shared_ptr<const Catalog> catalog_;
};

}  // namespace vitrine::agents::testing
