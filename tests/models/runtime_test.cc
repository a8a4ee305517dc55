#include "models/runtime.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdlib>

namespace vitrine::models {
namespace {

TEST(Runtime, SetsThreadsAndPassiveWaitPolicy) {
  init_runtime(RuntimeOptions{.threads = 1});
  EXPECT_EQ(at::get_num_threads(), 1);
  ASSERT_NE(std::getenv("OMP_WAIT_POLICY"), nullptr);
  init_runtime(RuntimeOptions{.threads = 2});
  EXPECT_EQ(at::get_num_threads(), 2);
}

}  // namespace
}  // namespace vitrine::models
