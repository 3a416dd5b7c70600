// The policy file and the shared verdict function.
#include <gtest/gtest.h>

#include <cstring>

#include "gpugate/device.hpp"
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
  EXPECT_EQ(p->table.flags, builtin.flags);
  EXPECT_EQ(p->table.read_wait_max_ns, builtin.read_wait_max_ns);
}

// The profile and the read bound of docs/gate.md: what the kernel holds, and
// what policy show writes back.
TEST(Policy, ProfileAndReadBound) {
  auto p = parse_policy("version = 1\nprofile = \"strict\"\nread_wait_max_us = 250\n", "p.toml");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_TRUE(p->table.flags & GG_POLF_STRICT);
  EXPECT_EQ(p->table.read_wait_max_ns, 250000u);
  auto again = parse_policy(policy_to_toml(*p), "round-trip");
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(0, std::memcmp(&again->table, &p->table, sizeof(gg_policy)));
  EXPECT_FALSE(builtin_policy(GG_MODE_ENFORCE).table.flags & GG_POLF_STRICT) << "strict is asked for, not assumed";
  for (const char* bad : {"profile = \"paranoid\"\n", "profile = 1\n", "read_wait_max_us = 0\n",
                          "read_wait_max_us = 4000001\n", "read_wait_max_us = \"1ms\"\n"}) {
    auto r = parse_policy(std::string("version = 1\n") + bad, "p.toml");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message.find("p.toml:2:"), std::string::npos) << r.error().message;
  }
}

// What the gates do while the ledger cannot be written (RELIABILITY.md).
TEST(Policy, DiskFullActionDefaultsToDenyGated) {
  EXPECT_EQ(builtin_policy(GG_MODE_ENFORCE).disk_full_action, DiskFullAction::deny_gated);
  auto shipped = load_policy(std::string(GG_SOURCE_DIR) + "/policy/default.toml");
  ASSERT_TRUE(shipped.ok()) << shipped.error().message;
  EXPECT_EQ(shipped->disk_full_action, DiskFullAction::deny_gated);
  auto keep = parse_policy("version = 1\ndisk_full_action = \"keep-enforcing\"\n", "p.toml");
  ASSERT_TRUE(keep.ok()) << keep.error().message;
  EXPECT_EQ(keep->disk_full_action, DiskFullAction::keep_enforcing);
  auto again = parse_policy(policy_to_toml(*keep), "round-trip");
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->disk_full_action, DiskFullAction::keep_enforcing);
  for (const char* bad : {"disk_full_action = \"drop\"\n", "disk_full_action = 1\n"}) {
    auto r = parse_policy(std::string("version = 1\n") + bad, "p.toml");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message.find("p.toml:2:"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("deny-gated"), std::string::npos) << r.error().message;
  }
  // The flag the daemon sets meanwhile: a grant does not help, ungated classes pass.
  gg_policy down = default_policy(GG_MODE_ENFORCE);
  down.flags |= GG_POLF_LEDGER_DOWN;
  EXPECT_EQ(decide(down, GG_CLASS_POWER_OFF, true, true), GG_VERDICT_DENY);
  EXPECT_EQ(decide(down, GG_CLASS_QUERY, false, true), GG_VERDICT_ALLOW);
  down.mode = GG_MODE_MONITOR;
  EXPECT_EQ(decide(down, GG_CLASS_POWER_OFF, true, true), GG_VERDICT_WOULD_DENY);
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
      {"\n\nrule = 3\n", "p.toml:3: unknown key \"rule\""},
      {"\n\nrules = 3\n", "p.toml:3: rules must be an array of tables"},
      {"[[rules]]\nclass = \"power.of\"\naction = \"deny\"\n", "p.toml:2: unknown class \"power.of\""},
      {"[[rules]]\nclass = \"power.off\"\n", "p.toml:1: rule 1 has no action"},
      {"[[rules]]\naction = \"deny\"\n", "p.toml:1: rule 1 matches everything"},
      {"[[rules]]\nname = \"x\"\nclass = [\"query\"]\nuser = 3\naction = \"deny\"\n",
       "p.toml:4: unknown key \"user\" in a rule"},
      {"[[rules]]\ngpu = \"/dev/nope0\"\naction = \"deny\"\n",
       "p.toml:2: gpu \"/dev/nope0\" is not a character device"},
      {"[[rules]]\nuid = -1\naction = \"deny\"\n", "p.toml:2: uid must be a number"},
      {"[[rules]]\ncomm = \"a-name-longer-than-15\"\naction = \"deny\"\n", "p.toml:2: comm must be a process name"},
      {"[[rules]]\nvendor = \"matrox\"\naction = \"deny\"\n", "p.toml:2: vendor must be nvidia, amd, intel or other"},
      {"[[rules]]\ncgroup = \"/tmp\"\naction = \"deny\"\n",
       "p.toml:2: cgroup must be the path of an existing cgroup v2"},
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

// [signers] caps what one signed request may grant: a window and a number of
// uses, with sane defaults, never above the request format's own maximum.
TEST(Policy, SignersCapAGrantsWindowAndUses) {
  auto builtin = builtin_policy(GG_MODE_ENFORCE);
  EXPECT_EQ(builtin.signers.max_grant_window, 3600);
  EXPECT_EQ(builtin.signers.max_grant_uses, 100);
  auto p = parse_policy(
      "version = 1\n[signers]\nallowed_signers = \"/etc/gpugate/allowed_signers\"\nmax_grant_window = \"15m\"\n"
      "max_grant_uses = 10\n",
      "p.toml");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->signers.max_grant_window, 900);
  EXPECT_EQ(p->signers.max_grant_uses, 10);
  EXPECT_EQ(p->signers.source, "p.toml");
  auto shown = policy_to_toml(*p);
  EXPECT_NE(shown.find("max_grant_window = \"15m\"\nmax_grant_uses = 10\n"), std::string::npos) << shown;
  auto again = parse_policy(shown, "round-trip");
  ASSERT_TRUE(again.ok()) << again.error().message << "\n" << shown;
  EXPECT_EQ(again->signers.max_grant_window, 900);
  EXPECT_EQ(again->signers.max_grant_uses, 10);
  // The built-in policy shows its caps too, and reads back as itself.
  auto builtin_text = policy_to_toml(builtin);
  EXPECT_NE(builtin_text.find("max_grant_window = \"1h\"\nmax_grant_uses = 100\n"), std::string::npos) << builtin_text;
  auto builtin_again = parse_policy(builtin_text, "built-in shown");
  ASSERT_TRUE(builtin_again.ok()) << builtin_again.error().message;
  EXPECT_TRUE(builtin_again->signers.allowed_signers.empty());
  auto shipped = load_policy(std::string(GG_SOURCE_DIR) + "/policy/default.toml");
  ASSERT_TRUE(shipped.ok()) << shipped.error().message;
  EXPECT_EQ(shipped->signers.max_grant_window, 3600);
  EXPECT_EQ(shipped->signers.max_grant_uses, 100);
  auto example = load_policy(std::string(GG_SOURCE_DIR) + "/policy/examples/datacenter.toml");
  ASSERT_TRUE(example.ok()) << example.error().message;
  EXPECT_EQ(example->signers.max_grant_window, 1800);

  struct Case {
    const char* text;
    const char* expect;
  } cases[] = {
      {"[signers]\nmax_grant_window = \"1w\"\n", "p.toml:2: max_grant_window must be a duration string from 1s to 30d"},
      {"[signers]\nmax_grant_window = 3600\n", "p.toml:2: max_grant_window must be a duration string"},
      {"[signers]\nmax_grant_window = \"31d\"\n", "p.toml:2: max_grant_window"},
      {"[signers]\nmax_grant_window = \"0s\"\n", "p.toml:2: max_grant_window"},
      {"[signers]\n\nmax_grant_uses = 0\n", "p.toml:3: max_grant_uses must be a number from 1 to 1000"},
      {"[signers]\nmax_grant_uses = 1001\n",
       "p.toml:2: max_grant_uses must be a number from 1 to 1000 (the request format's"},
      {"[signers]\nmax_grant_uses = \"5\"\n", "p.toml:2: max_grant_uses"},
      {"[signers]\nmax_grant_uses = 2.5\n", "p.toml:2: max_grant_uses"},
      {"[signers]\nmax_uses = 2\n",
       "p.toml:2: unknown key \"max_uses\" in [signers]; it has allowed_signers, "
       "break_glass_per_hour, max_grant_window, max_grant_uses"},
  };
  for (const auto& c : cases) {
    auto bad = parse_policy(c.text, "p.toml");
    ASSERT_FALSE(bad.ok()) << c.text;
    EXPECT_NE(bad.error().message.find(c.expect), std::string::npos) << bad.error().message;
  }
}

// Rules: first match wins, every field a rule sets must match, and the
// class's action applies when no rule does.
TEST(Verdict, RulesMatchOnEveryFieldTheySetFirstMatchWins) {
  auto p = parse_policy(
      "version = 1\n"
      "[[rules]]\nname = \"smi may set limits\"\nclass = [\"power.limit\", \"clock.limit\"]\ncomm = "
      "\"nvidia-smi\"\nuid = 0\naction = \"log\"\n"
      "[[rules]]\nname = \"no dumb buffers on virtual GPUs\"\nclass = \"resource\"\nvendor = \"other\"\n"
      "action = \"deny\"\n"
      "[[rules]]\ngpu = \"/dev/null\"\naction = \"deny\"\n",
      "p.toml");
  ASSERT_TRUE(p.ok()) << p.error().message;
  ASSERT_EQ(p->table.nrules, 3);
  ASSERT_EQ(p->rules.size(), 3u);
  EXPECT_EQ(p->rules[2].name, "rule 3");
  char smi[GG_COMM_LEN] = "nvidia-smi", other[GG_COMM_LEN] = "nvidia-smix";
  gg_subject s{GG_CLASS_POWER_LIMIT, kernel_dev(195, 0), 0, GG_VENDOR_NVIDIA, 1, smi};
  auto d = decide(p->table, s, false, true);
  EXPECT_EQ(d.rule, 1u);
  EXPECT_EQ(d.action, GG_ACT_LOG);
  EXPECT_EQ(d.verdict, GG_VERDICT_ALLOW);
  s.uid = 1000;  // another user: the class's action
  d = decide(p->table, s, false, true);
  EXPECT_EQ(d.rule, 0u);
  EXPECT_EQ(d.verdict, GG_VERDICT_DENY);
  s.uid = 0;
  s.comm = other;  // names compare whole, not by prefix
  EXPECT_EQ(decide(p->table, s, false, true).rule, 0u);
  s.comm = smi;
  s.cls = GG_CLASS_POWER_OFF;  // a class the rule does not list
  EXPECT_EQ(decide(p->table, s, false, true).rule, 0u);

  gg_subject vgem{GG_CLASS_RESOURCE, kernel_dev(226, 0), 1000, GG_VENDOR_OTHER, 1, other};
  d = decide(p->table, vgem, true, true);
  EXPECT_EQ(d.rule, 2u);
  EXPECT_EQ(d.verdict, GG_VERDICT_DENY) << "deny ignores grants";
  vgem.vendor = GG_VENDOR_NVIDIA;
  EXPECT_EQ(decide(p->table, vgem, false, true).verdict, GG_VERDICT_ALLOW) << "NVIDIA bookkeeping untouched";

  gg_subject null_dev{GG_CLASS_QUERY, kernel_dev(1, 3), 1000, GG_VENDOR_NVIDIA, 1, other};
  EXPECT_EQ(decide(p->table, null_dev, false, true).rule, 3u);

  auto monitor = p->table;
  monitor.mode = GG_MODE_MONITOR;
  vgem.vendor = GG_VENDOR_OTHER;
  EXPECT_EQ(decide(monitor, vgem, false, true).verdict, GG_VERDICT_WOULD_DENY);

  auto again = parse_policy(policy_to_toml(*p), "round-trip");
  ASSERT_TRUE(again.ok()) << again.error().message << "\n" << policy_to_toml(*p);
  EXPECT_EQ(0, std::memcmp(&again->table, &p->table, sizeof(gg_policy)));
}

TEST(Policy, AtMostSixteenRules) {
  std::string text = "version = 1\n";
  for (int i = 0; i < GG_MAX_RULES + 1; i++) text += "[[rules]]\nuid = " + std::to_string(i) + "\naction = \"log\"\n";
  auto p = parse_policy(text, "p.toml");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("the kernel holds at most 16"), std::string::npos) << p.error().message;
}

// Signed parameters the gate can compare: names the decoder gives one place.
TEST(Verdict, KeyParameterNamesResolveToOneLayoutOrNone) {
  auto level = key_param_refs("newLevel");
  ASSERT_EQ(level.size(), 1u);
  EXPECT_EQ(level[0].index, 1u);
  gg_decoded d{};
  d.pkind = static_cast<uint8_t>(level[0].pkind);
  d.key[1] = 4;
  auto named = key_params(d);
  ASSERT_GE(named.size(), 2u);
  EXPECT_EQ(named[1], (std::pair<std::string, uint64_t>{"newLevel", 4}));
  ASSERT_EQ(key_param_refs("newlevel").size(), 1u) << "requests spell names in lowercase";
  EXPECT_EQ(key_param_refs("newlevel")[0].pkind, level[0].pkind);
  EXPECT_GT(key_param_refs("value").size(), 1u) << "ambiguous: recorded, not checked";
  EXPECT_TRUE(key_param_refs("power_limit_mw").empty()) << "opaque controls name no such key";
}

// policy show prints what policy check reads back, whatever the strings hold.
TEST(Policy, ShowEscapesStrings) {
  auto p = parse_policy(
      "version = 1\n[[rules]]\nname = \"a\\\"b\\\\c\\td\"\nclass = \"power.limit\"\ncomm = \"x\\\"y\"\n"
      "action = \"log\"\n",
      "p.toml");
  ASSERT_TRUE(p.ok()) << p.error().message;
  ASSERT_EQ(p->rules.size(), 1u);
  EXPECT_EQ(p->rules[0].name, "a\"b\\c\td");
  auto again = parse_policy(policy_to_toml(*p), "shown");
  ASSERT_TRUE(again.ok()) << again.error().message << "\n" << policy_to_toml(*p);
  EXPECT_EQ(again->rules[0].name, p->rules[0].name);
  EXPECT_EQ(again->rules[0].comm, "x\"y");
  EXPECT_EQ(0, std::memcmp(&again->table, &p->table, sizeof(gg_policy)));
}
