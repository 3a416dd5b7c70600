// gpugated's metrics: the Prometheus text format and OpenMetrics, served on
// --metrics-listen (libmicrohttpd, its own thread) and written atomically to
// --metrics-textfile for node_exporter's textfile collector.
// docs/operations.md, "Metrics".
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gpugate/engine.hpp"
#include "gpugate/result.hpp"

struct MHD_Daemon;  // libmicrohttpd's

namespace gpugate {

// What one scrape shows: the daemon's counters, copied on its loop.
struct MetricsSnapshot {
  std::string version;
  std::string mode;
  int64_t start_time_unix = 0;
  // Records written by class, vendor and verdict (allowed, denied, would-deny).
  std::array<std::array<std::array<uint64_t, 3>, GG_VENDOR_COUNT>, GG_CLASS_COUNT> ioctls{};
  EngineStats engine;  // seen and lost in the kernel, per class
  std::vector<std::pair<std::string, bool>> hooks;
  uint64_t grants_active = 0;
  uint64_t gap_records = 0;
  uint64_t knob_writes = 0;
  uint64_t ledger_write_errors = 0;
  uint64_t ledger_records = 0;
  int64_t last_checkpoint_unix_ns = 0;  // 0 before the first
  uint64_t ledger_budget_bytes = 0;     // --ledger-max-gib in bytes (0: no budget)
  uint64_t ledger_bytes = 0;            // the ledger's files at the last budget check
  bool ledger_budget_over = false;
  uint64_t state_samples = 0, state_explained = 0, state_unexplained = 0;
};

// format: "prometheus" (text 0.0.4) or "openmetrics" (1.0.0, ends with # EOF).
std::string render_metrics(const MetricsSnapshot& s, bool openmetrics);

// The content types of the two renderings.
inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";
inline constexpr const char* kOpenMetricsContentType = "application/openmetrics-text; version=1.0.0; charset=utf-8";

// GET /metrics on ADDR: "PORT" or ":PORT" (loopback), "HOST:PORT", "[V6]:PORT"
// (numeric addresses). It answers with the latest published snapshot.
class MetricsServer {
 public:
  static Result<std::unique_ptr<MetricsServer>> start(const std::string& listen);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  void publish(const MetricsSnapshot& s);
  [[nodiscard]] uint16_t port() const { return port_; }
  [[nodiscard]] const std::string& address() const { return address_; }

  // The callback's view (libmicrohttpd's thread).
  std::pair<std::string, std::string> current(bool openmetrics);

 private:
  MetricsServer() = default;
  ::MHD_Daemon* daemon_ = nullptr;
  uint16_t port_ = 0;
  std::string address_;
  std::mutex mu_;
  std::string prometheus_, openmetrics_;
};

// PATH written as PATH.tmp, then renamed: node_exporter never reads half.
Result<void> write_metrics_textfile(const std::string& path, const MetricsSnapshot& s);

}  // namespace gpugate
