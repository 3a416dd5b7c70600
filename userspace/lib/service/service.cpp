#include "gpugate/service.hpp"

#include <syslog.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>

#include <fmt/format.h>

namespace gpugate {

ServiceNotifier::ServiceNotifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  managed_ = socket && *socket;
  uint64_t usec = 0;
  // sd_watchdog_enabled checks WATCHDOG_PID against our pid, so a child
  // that inherits the variables (the 32-bit probe, ssh-keygen) never takes
  // the watchdog as its own.
  if (managed_ && sd_watchdog_enabled(0, &usec) > 0) watchdog_usec_ = usec;
}

void ServiceNotifier::send(const std::string& message) {
  if (managed_) (void)sd_notify(0, message.c_str());
}

void ServiceNotifier::ready(const std::string& status) {
  last_status_ = status;
  send(fmt::format("READY=1\nSTATUS={}\nMAINPID={}", status, getpid()));
  last_ping_ = std::chrono::steady_clock::now();
}

void ServiceNotifier::status(const std::string& status) {
  if (status == last_status_) return;
  last_status_ = status;
  send("STATUS=" + status);
}

void ServiceNotifier::stopping(const std::string& why) { send("STOPPING=1\nSTATUS=" + why); }

void ServiceNotifier::tick(std::chrono::steady_clock::time_point now) {
  if (!watchdog_usec_) return;
  if (now - last_ping_ < std::chrono::microseconds(watchdog_usec_ / 2)) return;
  last_ping_ = now;
  pings_++;
  send("WATCHDOG=1");
}

namespace {

template <typename J>
std::string text_of(const J& v) {
  if (v.is_string()) return v.template get<std::string>();
  if (v.is_null()) return {};
  return v.dump();
}

// j[a][b]... as text, empty where any step is missing.
template <typename J>
std::string path_text(const J& j, std::initializer_list<const char*> keys) {
  const J* at = &j;
  for (const char* k : keys) {
    if (!at->is_object()) return {};
    auto it = at->find(k);
    if (it == at->end()) return {};
    at = &*it;
  }
  return text_of(*at);
}

}  // namespace

std::string service_status_line(const nlohmann::json& st) {
  std::string engines;
  if (st.contains("engines") && st["engines"].is_array())
    for (const auto& e : st["engines"]) engines += (engines.empty() ? "" : "+") + path_text(e, {"engine"});
  std::string line = fmt::format("{} via {}; {} records, {} lost, {} gaps", path_text(st, {"mode"}),
                                 engines.empty() ? path_text(st, {"engine"}) : engines, path_text(st, {"records"}),
                                 path_text(st, {"lost"}), path_text(st, {"gaps"}));
  // Hooks that a needed path lacks (the status file's detail says why).
  size_t attached = 0, needed = 0;
  if (st.contains("hooks") && st["hooks"].is_array())
    for (const auto& h : st["hooks"]) {
      if (!h.is_object() || !h.value("needed", true)) continue;
      needed++;
      attached += h.value("attached", false) ? 1 : 0;
    }
  if (needed) line += fmt::format("; {}/{} hooks attached", attached, needed);
  if (st.contains("watch") && st["watch"].is_object())
    line += fmt::format("; {} GPUs watched, {} unexplained changes", path_text(st, {"watch", "gpus"}),
                        path_text(st, {"watch", "unexplained"}));
  return line;
}

int journal_priority(const nlohmann::ordered_json& r) {
  if (!r.is_object()) return LOG_INFO;
  std::string type = path_text(r, {"type"});
  if (type == "state.unexplained" || type == "daemon.crash") return LOG_CRIT;
  if (type == "alarm" || type == "daemon.start_failed") return LOG_ERR;
  if (type == "gap") return LOG_WARNING;
  std::string verdict = path_text(r, {"verdict"});
  if (verdict == "denied") return LOG_WARNING;
  if (verdict == "would-deny") return LOG_NOTICE;
  // An allowed command that a grant let through: someone used an authorization.
  if (r.contains("grant") && r["grant"].is_object()) return LOG_NOTICE;
  return LOG_INFO;
}

std::vector<std::string> journal_fields(const nlohmann::ordered_json& r, const std::string& line) {
  std::vector<std::string> f;
  f.push_back("MESSAGE=" + line);
  f.push_back(fmt::format("PRIORITY={}", journal_priority(r)));
  f.push_back("SYSLOG_IDENTIFIER=gpugated");
  auto add = [&](const char* key, const std::string& value) {
    // journald fields are one line each here: a value with a newline would
    // need the binary form, and no record field has one.
    if (!value.empty() && value.find('\n') == std::string::npos) f.push_back(fmt::format("{}={}", key, value));
  };
  add("GPUGATE_TYPE", path_text(r, {"type"}));
  add("GPUGATE_SEQ", path_text(r, {"seq"}));
  add("GPUGATE_CLASS", path_text(r, {"decoded", "class"}));
  add("GPUGATE_VERDICT", path_text(r, {"verdict"}));
  add("GPUGATE_COMMAND", path_text(r, {"decoded", "command"}));
  std::string pci = path_text(r, {"device", "pci"});
  add("GPUGATE_PCI", pci.empty() ? path_text(r, {"gpu", "pci"}) : pci);
  add("GPUGATE_PID", path_text(r, {"process", "pid"}));
  add("GPUGATE_COMM", path_text(r, {"process", "comm"}));
  add("GPUGATE_GRANT", path_text(r, {"grant", "id"}));
  add("GPUGATE_FIELD", path_text(r, {"field"}));
  return f;
}

}  // namespace gpugate
