// The policy file and the shared verdict function.
#include <gtest/gtest.h>

#include "gpugate/policy.hpp"

using namespace gpugate;

TEST(Verdict, GatedClassesNeedAGrantAndARecord) {
  gg_policy enforce = default_policy(GG_MODE_ENFORCE), monitor = default_policy(GG_MODE_MONITOR);
  EXPECT_EQ(decide(enforce, GG_CLASS_POWER_OFF, false, true), GG_VERDICT_DENY);
  EXPECT_EQ(decide(monitor, GG_CLASS_POWER_OFF, false, true), GG_VERDICT_WOULD_DENY);
  EXPECT_EQ(decide(enforce, GG_CLASS_POWER_OFF, true, true), GG_VERDICT_ALLOW);
  EXPECT_EQ(decide(enforce, GG_CLASS_POWER_OFF, true, false), GG_VERDICT_DENY) << "no record, no gated command";
  EXPECT_EQ(decide(enforce, GG_CLASS_QUERY, false, false), GG_VERDICT_ALLOW) << "logged classes never block";
  EXPECT_EQ(decide(enforce, GG_CLASS_UNKNOWN, false, true), GG_VERDICT_ALLOW);
  gg_policy deny = enforce;
  deny.action[GG_CLASS_MIG_CONFIG] = GG_ACT_DENY;
  EXPECT_EQ(decide(deny, GG_CLASS_MIG_CONFIG, true, true), GG_VERDICT_DENY) << "deny ignores grants";
  EXPECT_EQ(decide(enforce, 200, false, true), GG_VERDICT_ALLOW) << "an out-of-range class reads as unknown";
}

TEST(Policy, TheShippedDefaultFileIsTheBuiltInPolicy) {
  auto p = load_policy(std::string(GG_SOURCE_DIR) + "/policy/default.toml");
  ASSERT_TRUE(p.ok()) << p.error().message;
  auto builtin = default_policy(GG_MODE_ENFORCE);
  EXPECT_EQ(p->table.mode, builtin.mode);
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++) EXPECT_EQ(p->table.action[c], builtin.action[c]) << class_name(c);
}

TEST(Policy, SetsModeAndActions) {
  auto p = parse_policy(
      "version = 1\nmode = \"monitor\"\n[classes]\n\"power.limit\" = \"log\"\n\"mig.config\" = "
      "\"deny\"\n",
      "p.toml");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->table.mode, GG_MODE_MONITOR);
  EXPECT_EQ(p->mode_name, "monitor");
  EXPECT_EQ(p->table.action[GG_CLASS_POWER_LIMIT], GG_ACT_LOG);
  EXPECT_EQ(p->table.action[GG_CLASS_MIG_CONFIG], GG_ACT_DENY);
  EXPECT_EQ(p->table.action[GG_CLASS_POWER_OFF], GG_ACT_REQUIRE_SIGNATURE) << "unnamed classes keep the default";
  auto again = parse_policy(policy_to_toml(*p), "round-trip");
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(0, std::memcmp(&again->table, &p->table, sizeof(gg_policy)));
}

TEST(Policy, ErrorsNameTheFileLineAndFix) {
  struct Case {
    const char* text;
    const char* expect;
  } cases[] = {
      {"version = 1\n[classes]\n\"power.of\" = \"deny\"\n", "p.toml:3: unknown class \"power.of\""},
      {"version = 1\n[classes]\n\"power.off\" = \"block\"\n", "p.toml:3: class \"power.off\": action must be"},
      {"version = 2\n", "p.toml:1: version must be 1"},
      {"mode = \"strict\"\n", "p.toml:1: mode must be"},
      {"mode = enforce\n", "p.toml:1: not valid TOML"},
      {"\n\nrules = 3\n", "p.toml:3: unknown key \"rules\""},
      {"[classes]\n\"unknown\" = \"deny\"\n", "p.toml:2: class \"unknown\" cannot be gated"},
      {"classes = 5\n", "p.toml:1: classes must be a table"},
  };
  for (const auto& c : cases) {
    auto p = parse_policy(c.text, "p.toml");
    ASSERT_FALSE(p.ok()) << c.text;
    EXPECT_NE(p.error().message.find(c.expect), std::string::npos) << p.error().message;
  }
  auto missing = load_policy("/nonexistent/policy.toml");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("/nonexistent/policy.toml"), std::string::npos);
}
