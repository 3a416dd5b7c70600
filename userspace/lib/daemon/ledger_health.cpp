// See ledger_health.hpp.
#include "gpugate/ledger_health.hpp"

#include <fmt/format.h>

namespace gpugate {

void LedgerHealth::after_flush(const Result<void>& flush, uint64_t boottime_ns, uint64_t lost_total) {
  if (!flush) {
    failed_flushes_++;
    if (down_) return;  // said once, not every 20 ms
    down_ = true;
    outages_++;
    since_ns_ = boottime_ns;
    lost_at_start_ = lost_total;
    error_ = flush.error().message;
    std::string then;
    if (action_ == DiskFullAction::deny_gated) {
      auto r = hooks_.set_gates_down(true);
      gates_down_ = r.ok();
      then = r ? "gated commands are denied until it can (disk_full_action deny-gated)"
               : fmt::format("and the gates could not be told to deny gated commands: {}", r.error().message);
    } else {
      then = "the gates keep deciding as the policy says (disk_full_action keep-enforcing)";
    }
    hooks_.say(
        fmt::format("ledger cannot be written: {}; records wait in memory (up to 64 MiB), {}; free space or "
                    "make the ledger directory writable",
                    error_, then));
    return;
  }
  if (!down_) return;
  down_ = false;
  // The records held meanwhile are written now; the gap says what was not.
  if (gates_down_) {
    if (auto r = hooks_.set_gates_down(false); !r)
      hooks_.say(fmt::format("ledger writable again, but the gates still deny gated commands: {}", r.error().message));
    gates_down_ = false;
  }
  uint64_t lost = lost_total - lost_at_start_;
  hooks_.record("gap", {{"class", "ledger"},
                        {"reason", "the ledger could not be written: " + error_},
                        {"from_boottime_ns", since_ns_},
                        {"to_boottime_ns", boottime_ns},
                        {"failed_flushes", failed_flushes_},
                        {"lost_records", lost},
                        {"disk_full_action", disk_full_action_name(action_)}});
  hooks_.say(fmt::format(
      "ledger writable again after {:.1f} s: the records held in memory are written{}",
      static_cast<double>(boottime_ns - since_ns_) / 1e9,
      lost ? fmt::format(", {} that did not fit are counted in a gap record", lost) : std::string(", none lost")));
  failed_flushes_ = 0;
  error_.clear();
}

nlohmann::ordered_json LedgerHealth::status() const {
  if (!down_) return {{"writable", true}};
  return {{"writable", false},
          {"since_boottime_ns", since_ns_},
          {"error", error_},
          {"disk_full_action", disk_full_action_name(action_)},
          {"gated_denied", gates_down_}};
}

}  // namespace gpugate
