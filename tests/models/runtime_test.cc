#include "models/runtime.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace vitrine::models {
namespace {

// (The wait policy is set by re-executing the program:
// InfoCli.ModelCommandsRunWithThePassiveWaitPolicy.)
TEST(Runtime, SetsThreads) {
  init_runtime(RuntimeOptions{.threads = 1});
  EXPECT_EQ(at::get_num_threads(), 1);
  init_runtime(RuntimeOptions{.threads = 2});
  EXPECT_EQ(at::get_num_threads(), 2);
}

TEST(Runtime, DeviceIsASettingCheckedAgainstTheBuild) {
  EXPECT_TRUE(resolve_device("cpu").is_cpu());
  try {
    resolve_device("gpu0");
    FAIL() << "an unknown device name was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'gpu0' is not a device name"), std::string::npos)
        << e.what();
  }
  if (at::hasCUDA()) {
    EXPECT_TRUE(resolve_device("cuda:0").is_cuda());
  } else {
    try {
      resolve_device("cuda:0");
      FAIL() << "cuda accepted by a build without CUDA";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace vitrine::models
