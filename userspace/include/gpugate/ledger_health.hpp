// Whether the ledger takes writes, followed after every flush. While it
// does not (disk full, read-only, I/O error) the records wait in the
// writer's buffer; the policy's disk_full_action says what the gates do
// meanwhile. Nothing is dropped silently: when writes work again a `gap`
// record of class "ledger" says for how long they failed, why, and how many
// records could not be held (docs/ledger.md, RELIABILITY.md).
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "gpugate/policy.hpp"
#include "gpugate/result.hpp"

namespace gpugate {

class LedgerHealth {
 public:
  struct Hooks {
    // deny-gated: true when writes start failing, false once they work.
    std::function<Result<void>(bool down)> set_gates_down;
    // Appends a record (the gap, once writes work).
    std::function<void(const std::string& type, nlohmann::ordered_json body)> record;
    // One line for people (stderr or the journal).
    std::function<void(const std::string& line)> say;
  };
  LedgerHealth(DiskFullAction action, Hooks hooks) : action_(action), hooks_(std::move(hooks)) {}

  // After a flush: its result, the boottime and the appends lost so far
  // (Pipeline counters().write_errors).
  void after_flush(const Result<void>& flush, uint64_t boottime_ns, uint64_t lost_total);

  [[nodiscard]] bool down() const { return down_; }
  // For the status file: {"writable":true} or since when and why not.
  [[nodiscard]] nlohmann::ordered_json status() const;
  [[nodiscard]] uint64_t outages() const { return outages_; }

 private:
  DiskFullAction action_;
  Hooks hooks_;
  bool down_ = false;
  bool gates_down_ = false;
  uint64_t since_ns_ = 0;
  uint64_t lost_at_start_ = 0;
  uint64_t failed_flushes_ = 0;
  uint64_t outages_ = 0;
  std::string error_;
};

}  // namespace gpugate
