// gpugated's metrics, named by Prometheus' conventions (a unit suffix,
// _total on counters): rendered for a scrape and for a textfile.
#include "gpugate/metrics.hpp"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "gpugate/decode.hpp"

namespace gpugate {
namespace {

std::string escape(std::string_view v) {
  std::string o;
  for (char c : v) {
    if (c == '\\' || c == '"')
      o += {'\\', c};
    else if (c == '\n')
      o += "\\n";
    else
      o += c;
  }
  return o;
}

// One metric family in either format: OpenMetrics names a counter's family
// without _total, the Prometheus text format with it.
class Writer {
 public:
  explicit Writer(bool openmetrics) : om_(openmetrics) {}
  void family(std::string_view name, std::string_view type, std::string_view help) {
    std::string fam(name);
    if (om_ && type == "counter" && fam.ends_with("_total")) fam.resize(fam.size() - 6);
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", fam, help, fam, type);
  }
  void sample(std::string_view name, std::string_view labels, uint64_t value) {
    out_ += labels.empty() ? fmt::format("{} {}\n", name, value) : fmt::format("{}{{{}}} {}\n", name, labels, value);
  }
  void sample_double(std::string_view name, double value) { out_ += fmt::format("{} {:.3f}\n", name, value); }
  std::string finish() {
    if (om_) out_ += "# EOF\n";
    return std::move(out_);
  }

 private:
  bool om_;
  std::string out_;
};

}  // namespace

std::string render_metrics(const MetricsSnapshot& s, bool openmetrics) {
  Writer w(openmetrics);
  w.family("gpugate_build_info", "gauge", "gpugated's version (always 1)");
  w.sample("gpugate_build_info", fmt::format("version=\"{}\"", escape(s.version)), 1);
  w.family("gpugate_gate_mode", "gauge", "the gate's mode in force (1 for the mode named)");
  for (const char* m : {"enforce", "monitor", "observe"})
    w.sample("gpugate_gate_mode", fmt::format("mode=\"{}\"", m), s.mode == m ? 1 : 0);
  w.family("gpugate_start_time_seconds", "gauge", "when gpugated started (Unix time)");
  w.sample("gpugate_start_time_seconds", "", static_cast<uint64_t>(s.start_time_unix));

  static constexpr const char* kVerdicts[] = {"allowed", "denied", "would-deny"};
  w.family("gpugate_ioctls_total", "counter", "GPU ioctls recorded, by command class, vendor and verdict");
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++)
    for (unsigned v = 0; v < GG_VENDOR_COUNT; v++)
      for (unsigned d = 0; d < 3; d++)
        if (s.ioctls[c][v][d])
          w.sample(
              "gpugate_ioctls_total",
              fmt::format("class=\"{}\",vendor=\"{}\",verdict=\"{}\"", class_name(c), vendor_name(v), kVerdicts[d]),
              s.ioctls[c][v][d]);
  w.family("gpugate_ioctls_seen_total", "counter", "GPU ioctls the kernel side saw, by command class");
  w.family("gpugate_records_lost_total", "counter",
           "records the kernel could not queue (ring buffer full), by command class; each is in a gap record");
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++) {
    const auto& pc = s.engine.per_class[c];
    if (pc.seen) w.sample("gpugate_ioctls_seen_total", fmt::format("class=\"{}\"", class_name(c)), pc.seen);
  }
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++) {
    const auto& pc = s.engine.per_class[c];
    w.sample("gpugate_records_lost_total", fmt::format("class=\"{}\"", class_name(c)), pc.dropped + pc.exit_dropped);
  }
  w.family("gpugate_gate_attached", "gauge", "whether each hook is attached (1) or not (0)");
  for (const auto& [hook, attached] : s.hooks)
    w.sample("gpugate_gate_attached", fmt::format("hook=\"{}\"", escape(hook)), attached ? 1 : 0);
  w.family("gpugate_grants_active", "gauge", "grants the kernel holds now");
  w.sample("gpugate_grants_active", "", s.grants_active);
  w.family("gpugate_gap_records_total", "counter", "gap records written (records lost, daemon restarts)");
  w.sample("gpugate_gap_records_total", "", s.gap_records);
  w.family("gpugate_knob_writes_total", "counter", "writes to GPU knobs and BAR mappings recorded");
  w.sample("gpugate_knob_writes_total", "", s.knob_writes);
  w.family("gpugate_ledger_write_errors_total", "counter", "ledger appends that failed");
  w.sample("gpugate_ledger_write_errors_total", "", s.ledger_write_errors);
  w.family("gpugate_ledger_records", "gauge", "records in the ledger (its next sequence number)");
  w.sample("gpugate_ledger_records", "", s.ledger_records);
  w.family("gpugate_last_checkpoint_timestamp_seconds", "gauge",
           "when the ledger's latest signed checkpoint was written (Unix time; 0 before the first)");
  w.sample_double("gpugate_last_checkpoint_timestamp_seconds", static_cast<double>(s.last_checkpoint_unix_ns) / 1e9);
  if (s.ledger_budget_bytes) {
    w.family("gpugate_ledger_budget_bytes", "gauge", "the ledger's size budget (gpugated --ledger-max-gib)");
    w.sample("gpugate_ledger_budget_bytes", "", s.ledger_budget_bytes);
    w.family("gpugate_ledger_bytes", "gauge", "the ledger directory's files, at the last budget check");
    w.sample("gpugate_ledger_bytes", "", s.ledger_bytes);
    w.family("gpugate_ledger_budget_exceeded", "gauge",
             "1 while the ledger is over its budget and keeps records that were not shipped (alert on it)");
    w.sample("gpugate_ledger_budget_exceeded", "", s.ledger_budget_over ? 1 : 0);
  }
  w.family("gpugate_state_samples_total", "counter", "rounds of the GPU state watcher");
  w.sample("gpugate_state_samples_total", "", s.state_samples);
  w.family("gpugate_state_explained_total", "counter", "GPU state changes a record explains");
  w.sample("gpugate_state_explained_total", "", s.state_explained);
  w.family("gpugate_state_unexplained_total", "counter",
           "GPU state changes nothing recorded explains (alert on any increase)");
  w.sample("gpugate_state_unexplained_total", "", s.state_unexplained);
  return w.finish();
}

namespace {

MHD_Result answer(void* cls, MHD_Connection* connection, const char* url, const char* method, const char*, const char*,
                  size_t*, void**) {
  auto* server = static_cast<MetricsServer*>(cls);
  unsigned status = MHD_HTTP_OK;
  std::string body, type = "text/plain; charset=utf-8";
  if (std::strcmp(method, "GET") != 0 && std::strcmp(method, "HEAD") != 0) {
    status = MHD_HTTP_METHOD_NOT_ALLOWED;
    body = "GET /metrics\n";
  } else if (std::strcmp(url, "/metrics") != 0) {
    status = MHD_HTTP_NOT_FOUND;
    body = "gpugated serves /metrics only\n";
  } else {
    const char* accept = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "Accept");
    bool om = accept && std::strstr(accept, "application/openmetrics-text");
    std::tie(type, body) = server->current(om);
  }
  MHD_Response* r = MHD_create_response_from_buffer(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", type.c_str());
  MHD_Result ret = MHD_queue_response(connection, status, r);
  MHD_destroy_response(r);
  return ret;
}

}  // namespace

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& listen) {
  std::string host = "127.0.0.1", port_text = listen;
  if (auto colon = listen.rfind(':'); colon != std::string::npos) {
    host = listen.substr(0, colon);
    port_text = listen.substr(colon + 1);
    if (host.empty()) host = "127.0.0.1";
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  }
  char* end = nullptr;
  unsigned long port = std::strtoul(port_text.c_str(), &end, 10);
  if (port_text.empty() || *end || port > 65535)
    return Error{
        fmt::format("--metrics-listen {}: not PORT, :PORT, HOST:PORT or [V6]:PORT (e.g. 127.0.0.1:9464)", listen)};
  sockaddr_storage addr{};
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    flags |= MHD_USE_IPv6;
  } else {
    return Error{fmt::format("--metrics-listen {}: {} is not a numeric IPv4 or IPv6 address", listen, host)};
  }
  std::unique_ptr<MetricsServer> s(new MetricsServer());
  s->daemon_ =
      MHD_start_daemon(flags, static_cast<uint16_t>(port), nullptr, nullptr, &answer, s.get(), MHD_OPTION_SOCK_ADDR,
                       &addr, MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
  if (!s->daemon_)
    return Error{fmt::format("--metrics-listen {}: cannot listen there ({}); is the port in use?", listen,
                             std::strerror(errno))};
  const MHD_DaemonInfo* info = MHD_get_daemon_info(s->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  s->port_ = info ? info->port : static_cast<uint16_t>(port);
  s->address_ = host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, s->port_)
                                                    : fmt::format("{}:{}", host, s->port_);
  return s;
}

MetricsServer::~MetricsServer() {
  if (daemon_) MHD_stop_daemon(daemon_);
}

void MetricsServer::publish(const MetricsSnapshot& s) {
  std::string prom = render_metrics(s, false), om = render_metrics(s, true);
  std::lock_guard<std::mutex> lock(mu_);
  prometheus_ = std::move(prom);
  openmetrics_ = std::move(om);
}

std::pair<std::string, std::string> MetricsServer::current(bool openmetrics) {
  std::lock_guard<std::mutex> lock(mu_);
  return openmetrics ? std::pair<std::string, std::string>{kOpenMetricsContentType, openmetrics_}
                     : std::pair<std::string, std::string>{kPrometheusContentType, prometheus_};
}

Result<void> write_metrics_textfile(const std::string& path, const MetricsSnapshot& s) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << render_metrics(s, false);
    if (!out)
      return Error{
          fmt::format("--metrics-textfile {}: cannot write {}: {}; point it at node_exporter's textfile "
                      "directory, which gpugated must be able to write",
                      path, tmp, std::strerror(errno))};
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return Error{fmt::format("--metrics-textfile {}: rename: {}", path, std::strerror(errno))};
  return {};
}

}  // namespace gpugate
