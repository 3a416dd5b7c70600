// A real Prometheus server (Debian's prometheus package) scrapes gpugated's
// --metrics-listen endpoint while the bundled client issues NVIDIA-ABI
// ioctls on an alias node: the counters it stores are the daemon's.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "process.hpp"
#include "tempdir.hpp"

using namespace std::chrono_literals;
using gpugate::test::run_shell;
using gpugate::test::slurp;
using gpugate::test::spawn;
using gpugate::test::wait_exit;

namespace {

const std::string kBin = GG_BIN_DIR;

// A loopback port nothing listens on now.
int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// The value of a PromQL query that returns one sample, or -1.
double query(int port, const std::string& promql) {
  auto r = run_shell("curl -sS -G --data-urlencode 'query=" + promql + "' http://127.0.0.1:" + std::to_string(port) +
                     "/api/v1/query");
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  if (j.is_discarded() || j.value("status", "") != "success" || j["data"]["result"].empty()) return -1;
  return std::stod(j["data"]["result"][0]["value"][1].get<std::string>());
}

}  // namespace

TEST(MetricsScrape, ARealPrometheusServerScrapesTheDaemon) {
  ASSERT_EQ(geteuid(), 0u) << "host tests need root";
  auto which = run_shell("command -v prometheus");
  ASSERT_EQ(which.status, 0) << "prometheus is not installed: make deps installs it";
  std::string prometheus = which.output.substr(0, which.output.find('\n'));
  gpugate::test::TempDir dir;
  auto status = dir.path / "status.json";
  pid_t daemon =
      spawn({kBin + "/gpugated", "--no-discover", "--device", "/dev/kmsg=nvidia", "--ledger",
             (dir.path / "ledger").string(), "--status-file", status.string(), "--state-dir", dir.path.string(),
             "--mode", "observe", "--no-pin", "--control-socket", "", "--metrics-listen", "127.0.0.1:0"},
            dir.path / "daemon.out");
  std::string endpoint;
  for (int i = 0; i < 400 && endpoint.empty(); i++) {
    auto j = nlohmann::json::parse(slurp(status), nullptr, false);
    if (!j.is_discarded() && j.value("state", "") == "running" && j["metrics"].is_string()) endpoint = j["metrics"];
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_FALSE(endpoint.empty()) << slurp(dir.path / "daemon.out");
  std::string target = endpoint.substr(7, endpoint.find("/metrics") - 7);  // host:port
  pid_t client = spawn({kBin + "/gpugate-nvclient", "/dev/kmsg", "demo"}, dir.path / "client.out");
  ASSERT_EQ(wait_exit(client), 0) << slurp(dir.path / "client.out");

  int web = free_port();
  std::ofstream(dir.path / "prometheus.yml") << "global:\n  scrape_interval: 1s\nscrape_configs:\n"
                                                "  - job_name: gpugate\n    static_configs:\n      - targets: ['"
                                             << target << "']\n";
  pid_t prom = spawn(
      {prometheus, "--config.file=" + (dir.path / "prometheus.yml").string(),
       "--storage.tsdb.path=" + (dir.path / "tsdb").string(), "--web.listen-address=127.0.0.1:" + std::to_string(web)},
      dir.path / "prometheus.out");
  double ioctls = -1, up = -1;
  // Both are polled until both are in: a scrape may land between the two queries, so that the
  // ioctls arrive while the "up" read just before them was still empty.
  for (int i = 0; i < 120 && (ioctls < 10 || up != 1); i++) {
    std::this_thread::sleep_for(500ms);
    ioctls = query(web, "sum(gpugate_ioctls_total{vendor=\"nvidia\"})");
    up = query(web, "up{job=\"gpugate\"}");
  }
  double off = query(web, "sum(gpugate_ioctls_total{class=\"power.off\",verdict=\"would-deny\"})");
  double records = query(web, "gpugate_ledger_records");
  kill(prom, SIGTERM);
  wait_exit(prom);
  kill(daemon, SIGTERM);
  EXPECT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  EXPECT_EQ(up, 1) << slurp(dir.path / "prometheus.out");
  EXPECT_EQ(ioctls, 10) << "the client's ten ioctls, as Prometheus stored them";
  EXPECT_EQ(off, 3) << "GPU_SET_POWER twice and the drain with removal";
  EXPECT_GE(records, 10);
}
