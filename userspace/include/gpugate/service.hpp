// gpugated under a service manager: readiness, status and watchdog through
// sd_notify(3), and the journald fields of each human line. docs/operations.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gpugate {

// Silent where no service manager listens (no NOTIFY_SOCKET): a daemon
// started by hand or by a test behaves the same, minus the messages.
class ServiceNotifier {
 public:
  ServiceNotifier();

  // READY=1 with the first status line: sent once the gates are attached
  // and the ledger is open, so "systemctl start" returns on a daemon that
  // already records and enforces.
  void ready(const std::string& status);
  // STATUS=, sent only when it changed (systemctl status shows it).
  void status(const std::string& status);
  // RELOADING is not used: gpugated re-reads nothing at run time.
  void stopping(const std::string& why);
  // WATCHDOG=1 when half of WatchdogSec has passed since the last one.
  // Called from the loop that drains the rings, so a stuck loop is what
  // stops the pings and makes systemd restart the daemon.
  void tick(std::chrono::steady_clock::time_point now);

  bool watchdog_enabled() const { return watchdog_usec_ != 0; }
  uint64_t watchdog_usec() const { return watchdog_usec_; }
  uint64_t pings() const { return pings_; }

 private:
  void send(const std::string& message);
  bool managed_ = false;
  uint64_t watchdog_usec_ = 0;
  uint64_t pings_ = 0;
  std::chrono::steady_clock::time_point last_ping_{};
  std::string last_status_;
};

// One line for STATUS= from the status file's object: what "gpugate status"
// leads with (mode, engines, records, losses, grants, unexplained changes).
std::string service_status_line(const nlohmann::json& status);

// The journald fields of one record's human line: MESSAGE, PRIORITY (by
// verdict: denied warning, would-deny notice, unexplained GPU state and
// crashes crit, alarms err, the rest info), GPUGATE_TYPE, GPUGATE_SEQ and,
// where the record has them, GPUGATE_CLASS, GPUGATE_VERDICT,
// GPUGATE_COMMAND, GPUGATE_PCI, GPUGATE_PID, GPUGATE_COMM, GPUGATE_GRANT.
std::vector<std::string> journal_fields(const nlohmann::ordered_json& record, const std::string& line);

// The syslog priority journal_fields gives a record.
int journal_priority(const nlohmann::ordered_json& record);

}  // namespace gpugate
