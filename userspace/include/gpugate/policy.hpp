// The policy file (DESIGN section 5): the mode and an action per class, in
// TOML. Errors name the file, the line and the fix.
#pragma once

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "gpugate/authorize.hpp"
#include "gpugate/decode.hpp"
#include "gpugate/result.hpp"

namespace gpugate {

// A [[rules]] entry as written (the kernel holds its gg_rule form).
struct PolicyRule {
  std::string name;  // "rule N" when the file gives none
  std::vector<std::string> classes;
  std::string vendor, gpu, comm, cgroup;
  std::optional<uint32_t> uid;
  std::string action;
  int line = 0;
};

inline constexpr int64_t kDefaultMaxGrantWindow = 3600;  // seconds
inline constexpr int64_t kMaxReadWaitUs = 4'000'000;     // read_wait_max_us at most (the kernel holds ns in 32 bits)
inline constexpr int64_t kDefaultMaxGrantUses = 100;
inline constexpr int64_t kMaxGrantWindowCap = 30 * 86400;  // what max_grant_window may be set to at most

// The policy's [signers] section: who may sign requests, and how much one
// request may grant.
struct SignersConfig {
  std::string allowed_signers;                        // OpenSSH allowed_signers file; "" = signed requests are refused
  std::vector<auth::SignerGroup> groups;              // none: one trusted signature suffices
  unsigned break_glass_per_hour = 1;                  // grants a break-glass group may authorize per hour
  int64_t max_grant_window = kDefaultMaxGrantWindow;  // seconds from not-before to not-after, at most
  int64_t max_grant_uses = kDefaultMaxGrantUses;      // param uses=N, at most (<= auth::kMaxGrantUses)
  std::string source = "built-in";                    // the policy file, for messages
};

// Reads the allowed_signers file the policy names (if any) and checks every
// line: a weak RSA key, a cert-authority line or a malformed key or option
// is an error naming file:line and the fix. gpugated calls it at start,
// gpugate policy check too.
Result<void> check_allowed_signers(const SignersConfig& signers);

// What the gates do while the daemon cannot write its ledger (disk full,
// read-only): deny gated commands, grant or not (GG_POLF_LEDGER_DOWN), or keep
// deciding as the policy says with the records held in memory.
enum class DiskFullAction { deny_gated, keep_enforcing };
std::string_view disk_full_action_name(DiskFullAction a);

inline constexpr int64_t kDefaultSummaryInterval = 300;  // seconds between ioctl.summary flushes
inline constexpr int64_t kMaxSummaryInterval = 3600;

// The policy's [record] section: how much of each class's traffic is
// written (enum gg_record_level per class), and how often summaries and
// counts are. gg_record_level_of raises any call that is not plain traffic
// to full.
struct RecordConfig {
  std::array<uint8_t, GG_CLASS_COUNT> level{};  // GG_REC_FULL for every class unless set
  int64_t interval = kDefaultSummaryInterval;   // seconds
  [[nodiscard]] bool any_below_full() const {
    return std::any_of(level.begin(), level.end(), [](uint8_t l) { return l != GG_REC_FULL; });
  }
};

std::string_view record_level_name(unsigned level);  // full, summary, count

struct Policy {
  gg_policy table{};  // what the kernel holds (mode, rules, action per class)
  RecordConfig record;
  DiskFullAction disk_full_action = DiskFullAction::deny_gated;
  std::string mode_name;  // as written, "" when the file does not set it
  std::string source;     // file path, or "built-in"
  std::vector<PolicyRule> rules;
  SignersConfig signers;
};

// The built-in policy as a Policy.
Policy builtin_policy(unsigned mode);

// Parse TOML text; name is used in messages ("policy.toml:12: ...").
Result<Policy> parse_policy(const std::string& text, const std::string& name);
Result<Policy> load_policy(const std::string& path);

// The policy as TOML, every class listed (gpugate policy show).
std::string policy_to_toml(const Policy& p);

}  // namespace gpugate
