// The record writer must produce valid JSON for any bytes a process can put
// into comm, exe or a path, and the same values nlohmann reads back.
#include <gtest/gtest.h>

#include <random>

#include <nlohmann/json.hpp>

#include "gpugate/json_out.hpp"

using namespace gpugate;

TEST(JsonOut, EscapesAndRoundTrips) {
  std::string text;
  JsonOut o(text);
  o.begin_object();
  o.field("q", "a\"b\\c\n\t\x01");
  o.field("utf8", "gr\xc3\xbc\xc3\x9f");
  o.field("n", int64_t{-5}).field("u", uint64_t{18446744073709551615ull}).field("b", true);
  o.key("x").null();
  o.key("h").hex32(0xC020462A);
  o.key("a").begin_array().str("1").num(2).end_array();
  o.key("o").begin_object().end_object();
  o.end_object();
  auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["q"], "a\"b\\c\n\t\x01");
  EXPECT_EQ(j["utf8"], "gr\xc3\xbc\xc3\x9f");
  EXPECT_EQ(j["n"], -5);
  EXPECT_EQ(j["u"], 18446744073709551615ull);
  EXPECT_TRUE(j["x"].is_null());
  EXPECT_EQ(j["h"], "0xc020462a");
  EXPECT_EQ(j["a"].size(), 2u);
  EXPECT_TRUE(j["o"].empty());
}

TEST(JsonOut, AnyBytesMakeValidJson) {
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; i++) {
    std::string s(rng() % 40, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    std::string text;
    JsonOut o(text);
    o.begin_object().field("s", std::string_view(s)).end_object();
    auto j = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << text;
  }
  // A stray byte stays visible as its own escape.
  std::string text;
  JsonOut o(text);
  o.str("a\xff");
  EXPECT_EQ(text, "\"a\\u00ff\"");
}
