// Whole small files and token lists, with errors that name the setting.
#include "common/text_file.h"

#include <gtest/gtest.h>

#include "tests/support/expect_error.h"
#include "tests/support/temp_dir.h"

namespace vitrine {
namespace {

TEST(TextFile, TokensComeInFileOrderWithoutCommentsOrBlanks) {
  testing::TempDir dir;
  testing::write_file(dir / "tokens", "# users\n  zeta-token \n\n\talpha-token\r\n#off\n");
  EXPECT_EQ(read_token_file(dir / "tokens", "auth.user_tokens_file"),
            (std::vector<std::string>{"zeta-token", "alpha-token"}));
  EXPECT_EQ(read_whole_file(dir / "tokens", "x"),
            "# users\n  zeta-token \n\n\talpha-token\r\n#off\n");
}

TEST(TextFile, ErrorsNameTheSettingAndThePath) {
  testing::TempDir dir;
  testing::write_file(dir / "empty", "");
  EXPECT_EQ(read_whole_file(dir / "empty", "tls.cert"), "");
  testing::write_file(dir / "comments", "# nothing here\n\n");
  testing::expect_error([&] { read_token_file(dir / "comments", "gateway.tokens_file"); },
                        {"gateway.tokens_file", "comments", "holds no token"});
  testing::expect_error([&] { read_whole_file(dir / "missing", "tls.key"); },
                        {"tls.key", "missing", "cannot read"});
  testing::expect_error([&] { read_whole_file(dir.path(), "tls.cert"); },
                        {"tls.cert", "cannot read"});
  testing::expect_error([&] { read_token_file(dir / "missing", "auth.admin_tokens_file"); },
                        {"auth.admin_tokens_file", "cannot read"});
}

}  // namespace
}  // namespace vitrine
