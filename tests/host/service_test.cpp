// gpugated as systemd runs it (Type=notify, WatchdogSec=): READY=1 comes
// only once the gate is attached and daemon.start is in the ledger, the
// watchdog is answered from the loop, STATUS= says what gpugate status
// leads with, and a stop says STOPPING=1 first. docs/operations.md.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "ledger_read.hpp"
#include "process.hpp"
#include "tempdir.hpp"

namespace {

using gpugate::test::slurp;
using gpugate::test::spawn;
using gpugate::test::wait_exit;
using namespace std::chrono_literals;

const std::string kBin = GG_BIN_DIR;

TEST(Systemd, ReadyAfterTheLedgerHasDaemonStartThenWatchdogPingsAndStopping) {
  ASSERT_EQ(geteuid(), 0u) << "host tests need root";
  gpugate::test::TempDir dir;
  std::string sock_path = (dir.path / "notify").string();
  int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  sock_path.copy(a.sun_path, sizeof(a.sun_path) - 1);
  ASSERT_EQ(bind(sock, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  timeval tv{60, 0};  // an upper bound on a slow machine, never a pace
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  auto ledger = dir.path / "ledger";
  // As systemd starts it: NOTIFY_SOCKET, and WATCHDOG_PID naming the daemon
  // itself (the shell's pid is the daemon's after exec).
  std::string cmd = "NOTIFY_SOCKET=" + sock_path + " WATCHDOG_USEC=400000 WATCHDOG_PID=$$ exec " + kBin +
                    "/gpugated --no-discover --device /dev/kmsg=nvidia --ledger " + ledger.string() +
                    " --status-file " + (dir.path / "status.json").string() + " --state-dir " + dir.path.string() +
                    " --mode observe --no-pin --control-socket ''";
  pid_t daemon = spawn({"/bin/sh", "-c", cmd}, dir.path / "daemon.out");

  std::vector<std::string> got;
  auto next = [&]() -> std::string {
    char buf[4096];
    ssize_t n = recv(sock, buf, sizeof(buf), 0);
    if (n <= 0) return {};
    got.emplace_back(buf, static_cast<size_t>(n));
    return got.back();
  };
  std::string ready = next();
  ASSERT_NE(ready.find("READY=1"), std::string::npos) << ready << slurp(dir.path / "daemon.out");
  // By READY the ledger holds daemon.start, and the status file is written.
  auto starts = gpugate::test::ledger_records(ledger, "daemon.start");
  ASSERT_EQ(starts.size(), 1u) << "READY=1 before daemon.start was in the ledger";
  EXPECT_NE(ready.find("MAINPID=" + std::to_string(daemon)), std::string::npos) << ready;
  EXPECT_NE(ready.find("STATUS=observe via bpf; "), std::string::npos) << ready;
  EXPECT_NE(ready.find(" records, 0 lost"), std::string::npos) << ready;
  EXPECT_NE(slurp(dir.path / "status.json").find("\"running\""), std::string::npos);

  // The loop answers the watchdog: two pings (at most every 200 ms).
  int pings = 0;
  for (int i = 0; i < 50 && pings < 2; i++)
    if (next() == "WATCHDOG=1") pings++;
  EXPECT_EQ(pings, 2) << ::testing::PrintToString(got);

  kill(daemon, SIGTERM);
  bool stopping = false;
  for (int i = 0; i < 50 && !stopping; i++) {
    std::string m = next();
    if (m.empty()) break;
    stopping = m.starts_with("STOPPING=1");
  }
  EXPECT_TRUE(stopping) << ::testing::PrintToString(got);
  EXPECT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  close(sock);
}

}  // namespace
