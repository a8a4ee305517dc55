#include <gtest/gtest.h>
#include "trainer/product.h"
TEST(Product, SplitNames) { EXPECT_EQ(vitrine::trainer::split_name(vitrine::trainer::Split::kTest), "test"); }
