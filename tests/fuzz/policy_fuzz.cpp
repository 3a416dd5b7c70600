// libFuzzer target for the policy file (lib/policy: parse_policy, the TOML
// reader behind gpugate policy check and gpugated --policy).
//
// What must hold, beyond "no crash, no uncaught exception":
//  - a refused file gets an error that starts with the file's name and a line
//    ("fuzz.toml:12: ..."), as every policy error promises;
//  - an accepted policy is in range for the kernel: a known mode, an action
//    per class, at most GG_MAX_RULES rules, nrules agreeing with the rules;
//  - what gpugate policy show prints (policy_to_toml) is a policy again, the
//    same one: kernel table byte for byte, rules, mode and signers, whatever
//    the strings hold (policy_to_toml escapes them).
//
// Build and run with `make fuzz`; seeds in tests/fuzz/corpus/policy/.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "gpugate/policy.hpp"

using namespace gpugate;

namespace {

const std::string kName = "fuzz.toml";

bool known_action(unsigned a) {
  return a == GG_ACT_ALLOW || a == GG_ACT_LOG || a == GG_ACT_DENY || a == GG_ACT_REQUIRE_SIGNATURE;
}

void check_in_range(const Policy& p) {
  const gg_policy& t = p.table;
  if (t.mode != GG_MODE_ENFORCE && t.mode != GG_MODE_MONITOR) __builtin_trap();
  if (t.nrules > GG_MAX_RULES || t.nrules != p.rules.size()) __builtin_trap();
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++)
    if (!known_action(t.action[c])) __builtin_trap();
  for (unsigned i = 0; i < t.nrules; i++)
    if (!known_action(t.rules[i].action) || !t.rules[i].match) __builtin_trap();
}

bool same_rules(const Policy& a, const Policy& b) {
  if (a.rules.size() != b.rules.size()) return false;
  for (size_t i = 0; i < a.rules.size(); i++) {
    const auto &x = a.rules[i], &y = b.rules[i];
    if (x.name != y.name || x.classes != y.classes || x.vendor != y.vendor || x.gpu != y.gpu || x.comm != y.comm ||
        x.cgroup != y.cgroup || x.uid != y.uid || x.action != y.action)
      return false;
  }
  return true;
}

bool same_signers(const SignersConfig& a, const SignersConfig& b) {
  if (a.allowed_signers != b.allowed_signers || a.break_glass_per_hour != b.break_glass_per_hour ||
      a.max_grant_window != b.max_grant_window || a.max_grant_uses != b.max_grant_uses ||
      a.groups.size() != b.groups.size())
    return false;
  for (size_t i = 0; i < a.groups.size(); i++) {
    const auto &x = a.groups[i], &y = b.groups[i];
    if (x.name != y.name || x.principals != y.principals || x.threshold != y.threshold ||
        x.break_glass != y.break_glass)
      return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto p = parse_policy(text, kName);
  if (!p) {
    if (p.error().message.rfind(kName + ":", 0) != 0) __builtin_trap();  // the error names the file and line
    return 0;
  }
  check_in_range(*p);
  auto shown = policy_to_toml(*p);
  auto again = parse_policy(shown, kName);
  if (!again) __builtin_trap();  // policy show printed a policy that policy check refuses
  if (std::memcmp(&again->table, &p->table, sizeof(gg_policy)) != 0 || again->mode_name != p->mode_name ||
      !same_rules(*p, *again) || !same_signers(p->signers, again->signers) || again->record.level != p->record.level ||
      again->record.interval != p->record.interval)
    __builtin_trap();
  return 0;
}
