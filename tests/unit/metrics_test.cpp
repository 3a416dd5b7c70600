// gpugated's metrics: both renderings, promtool's check of the Prometheus
// text, the endpoint (a real HTTP request with curl) and the textfile.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "gpugate/decode.hpp"
#include "gpugate/metrics.hpp"
#include "process.hpp"
#include "tempdir.hpp"

using namespace gpugate;

namespace {

MetricsSnapshot sample() {
  MetricsSnapshot s;
  s.version = "0.2.0";
  s.mode = "enforce";
  s.start_time_unix = 1796000000;
  s.ioctls[GG_CLASS_POWER_OFF][GG_VENDOR_NVIDIA][1] = 3;  // denied
  s.ioctls[GG_CLASS_QUERY][GG_VENDOR_NVIDIA][0] = 40;
  s.engine.per_class[GG_CLASS_QUERY].seen = 41;
  s.engine.per_class[GG_CLASS_QUERY].dropped = 1;
  s.hooks = {{"lsm.s/file_ioctl", true}, {"kmod/nvidia \"x\"", false}};
  s.grants_active = 2;
  s.ledger_records = 77;
  s.last_checkpoint_unix_ns = 1796000005500000000;
  s.state_unexplained = 1;
  s.ledger_budget_bytes = 3ull << 30;
  s.ledger_bytes = 4ull << 30;
  s.ledger_budget_over = true;
  return s;
}

std::string write_temp(const test::TempDir& dir, const std::string& name, const std::string& text) {
  auto p = (dir.path / name).string();
  std::ofstream(p) << text;
  return p;
}

}  // namespace

TEST(Metrics, ThePrometheusTextNamesEveryFamilyAndPassesPromtool) {
  std::string text = render_metrics(sample(), false);
  EXPECT_NE(text.find("# TYPE gpugate_ioctls_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("gpugate_ioctls_total{class=\"power.off\",vendor=\"nvidia\",verdict=\"denied\"} 3\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("gpugate_records_lost_total{class=\"query\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("gpugate_gate_attached{hook=\"lsm.s/file_ioctl\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("gpugate_gate_attached{hook=\"kmod/nvidia \\\"x\\\"\"} 0\n"), std::string::npos) << "escaped";
  EXPECT_NE(text.find("gpugate_grants_active 2\n"), std::string::npos);
  EXPECT_NE(text.find("gpugate_state_unexplained_total 1\n"), std::string::npos);
  EXPECT_NE(text.find("gpugate_ledger_records 77\n"), std::string::npos);
  EXPECT_NE(text.find("gpugate_last_checkpoint_timestamp_seconds 1796000005.500\n"), std::string::npos);
  EXPECT_NE(text.find("gpugate_gate_mode{mode=\"enforce\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("gpugate_ledger_budget_bytes 3221225472\n"), std::string::npos);
  EXPECT_NE(text.find("gpugate_ledger_bytes 4294967296\n"), std::string::npos);
  EXPECT_NE(text.find("gpugate_ledger_budget_exceeded 1\n"), std::string::npos);
  EXPECT_EQ(text.find("# EOF"), std::string::npos);
  test::TempDir dir;
  auto r = test::run_shell("promtool check metrics < " + write_temp(dir, "m.prom", text));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "") << "promtool's lint found nothing";
  // promtool can fail: a counter without _total is a lint error.
  auto bad = test::run_shell("promtool check metrics < " +
                             write_temp(dir, "bad.prom", "# HELP x_count a\n# TYPE x_count counter\nx_count 1\n"));
  EXPECT_NE(bad.status, 0) << bad.output;
}

TEST(Metrics, OpenMetricsNamesCounterFamiliesWithoutTotalAndEnds) {
  std::string text = render_metrics(sample(), true);
  EXPECT_NE(text.find("# TYPE gpugate_ioctls counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("gpugate_ioctls_total{class=\"power.off\""), std::string::npos);
  EXPECT_NE(text.find("# TYPE gpugate_grants_active gauge\n"), std::string::npos);
  ASSERT_GE(text.size(), 6u);
  EXPECT_EQ(text.substr(text.size() - 6), "# EOF\n");
}

TEST(Metrics, TheEndpointAnswersGetMetricsInTheFormatAsked) {
  auto server = MetricsServer::start("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.error().message;
  auto& s = **server;
  ASSERT_GT(s.port(), 0);
  s.publish(sample());
  std::string url = "http://" + s.address();
  auto prom = test::run_shell("curl -sS -i " + url + "/metrics");
  ASSERT_EQ(prom.status, 0) << prom.output;
  EXPECT_NE(prom.output.find("200 OK"), std::string::npos) << prom.output;
  EXPECT_NE(prom.output.find("text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(prom.output.find(render_metrics(sample(), false)), std::string::npos);
  auto om = test::run_shell("curl -sS -H 'Accept: application/openmetrics-text;version=1.0.0' " + url + "/metrics");
  EXPECT_EQ(om.output, render_metrics(sample(), true));
  EXPECT_NE(test::run_shell("curl -sS -i " + url + "/other").output.find("404"), std::string::npos);
  EXPECT_NE(test::run_shell("curl -sS -i -X POST " + url + "/metrics").output.find("405"), std::string::npos);
}

TEST(Metrics, BadListenAddressesAreRefusedByName) {
  for (const char* bad : {"localhost:9464", "127.0.0.1:99999", "127.0.0.1:", "x"}) {
    auto s = MetricsServer::start(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.error().message.find(std::string("--metrics-listen ") + bad), std::string::npos) << s.error().message;
  }
  auto first = MetricsServer::start("127.0.0.1:0");
  ASSERT_TRUE(first.ok());
  auto taken = MetricsServer::start("127.0.0.1:" + std::to_string((*first)->port()));
  ASSERT_FALSE(taken.ok());
  EXPECT_NE(taken.error().message.find("in use"), std::string::npos) << taken.error().message;
}

TEST(Metrics, TheTextfileIsWrittenWholeOrNotAtAll) {
  test::TempDir dir;
  auto path = (dir.path / "gpugate.prom").string();
  ASSERT_TRUE(write_metrics_textfile(path, sample()).ok());
  EXPECT_EQ(test::slurp(path), render_metrics(sample(), false));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  auto bad = write_metrics_textfile((dir.path / "no/such/dir/x.prom").string(), sample());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("--metrics-textfile"), std::string::npos);
}
