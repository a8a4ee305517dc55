// Expecting errors in tests: any exception whose message holds some parts,
// or one of a given type naming something.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace vitrine::testing {

inline void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const std::exception& e) {
    const std::string message = e.what();
    for (const auto& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos)
          << "message: " << message << "\nmissing: " << part;
    }
    return;
  }
  ADD_FAILURE() << "no exception thrown";
}

// Runs `f`, which must throw E with `needle` in its message.
template <typename E, typename F>
void expect_throw_naming(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one naming " << needle;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected it to name: " << needle;
  }
}

}  // namespace vitrine::testing
