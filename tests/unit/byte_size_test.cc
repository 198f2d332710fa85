// The one byte-size parser: the spellings the tools' size options accept (1.5K, 4KB) and those
// RINGLINK_CHUNK_BYTES accepts (524288, 512K, 1M, 1G), and what both refuse.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "common/byte_size.h"

using ringlink::parse_byte_size;

TEST(ByteSize, PlainCountsAndSuffixes) {
  EXPECT_EQ(parse_byte_size("8"), 8u);
  EXPECT_EQ(parse_byte_size("0"), 0u);
  EXPECT_EQ(parse_byte_size("524288"), 524288u);
  EXPECT_EQ(parse_byte_size("64K"), 65536u);
  EXPECT_EQ(parse_byte_size("64k"), 65536u);
  EXPECT_EQ(parse_byte_size("512K"), 512u << 10);
  EXPECT_EQ(parse_byte_size("1M"), 1048576u);
  EXPECT_EQ(parse_byte_size("4m"), 4u << 20);
  EXPECT_EQ(parse_byte_size("256M"), 268435456u);
  EXPECT_EQ(parse_byte_size("1G"), uint64_t{1} << 30);
  EXPECT_EQ(parse_byte_size("2g"), uint64_t{2} << 30);
  EXPECT_EQ(parse_byte_size("3T"), uint64_t{3} << 40);
}

TEST(ByteSize, FractionsUnitNamesAndBlanks) {
  EXPECT_EQ(parse_byte_size("1.5K"), 1536u);
  EXPECT_EQ(parse_byte_size("0.5M"), 512u << 10);
  EXPECT_EQ(parse_byte_size("4KB"), 4096u);
  EXPECT_EQ(parse_byte_size("4kb"), 4096u);
  EXPECT_EQ(parse_byte_size("4KiB"), 4096u);
  EXPECT_EQ(parse_byte_size("100B"), 100u);
  EXPECT_EQ(parse_byte_size(" 16M "), 16u << 20);
}

TEST(ByteSize, LargeCountsAreExactUpToTheLimit) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(parse_byte_size("18446744073709551615"), kMax);  // not rounded through a double
  EXPECT_EQ(parse_byte_size("9007199254740993"), uint64_t{9007199254740993});  // 2^53 + 1
  EXPECT_EQ(parse_byte_size("16777215T"), uint64_t{16777215} << 40);
  EXPECT_FALSE(parse_byte_size("18446744073709551616").has_value());
  EXPECT_FALSE(parse_byte_size("16777216T").has_value());  // 2^64: one past the limit
  EXPECT_FALSE(parse_byte_size("17179869184G").has_value());
}

TEST(ByteSize, RefusesNonsense) {
  for (const char* bad : {"", " ", "-1", "+1", "-0", "abc", "1.5", "0.1K", "10X", "12Q", "1KK", "1KBB", "M", "K1",
                          "1e400", "nan", "inf", "0x10", "1 K"})
    EXPECT_FALSE(parse_byte_size(bad).has_value()) << "'" << bad << "'";
}
