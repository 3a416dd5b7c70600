// gpugated under systemd: the sd_notify messages (readiness, status, the
// watchdog's pace), the journald fields of each record, the unit file as
// systemd reads it, and bash completion from --help. docs/operations.md.
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpugate/service.hpp"
#include "process.hpp"
#include "tempdir.hpp"

namespace {

using gpugate::journal_fields;
using gpugate::journal_priority;
using gpugate::service_status_line;
using gpugate::ServiceNotifier;
using gpugate::test::run_shell;
using gpugate::test::TempDir;
using nlohmann::ordered_json;
using namespace std::chrono_literals;

const std::string kBin = GG_BIN_DIR;
const std::string kSource = GG_SOURCE_DIR;

ordered_json denied_ioctl() {
  return ordered_json::parse(R"({"seq": 41, "type": "ioctl", "verdict": "denied",
    "process": {"pid": 4242, "comm": "nvidia-smi"},
    "device": {"kind": "nvidia-gpu", "pci": "0000:3b:00.0"},
    "decoded": {"command": "NV2080_CTRL_CMD_GPU_SET_POWER", "class": "power.off"},
    "grant": null})");
}

bool has(const std::vector<std::string>& fields, const std::string& f) {
  return std::find(fields.begin(), fields.end(), f) != fields.end();
}

TEST(Journal, ADeniedCommandCarriesItsFieldsAtWarning) {
  auto f = journal_fields(denied_ioctl(), "the human line");
  EXPECT_EQ(f.front(), "MESSAGE=the human line");
  EXPECT_TRUE(has(f, "PRIORITY=4"));
  EXPECT_TRUE(has(f, "GPUGATE_TYPE=ioctl"));
  EXPECT_TRUE(has(f, "GPUGATE_SEQ=41"));
  EXPECT_TRUE(has(f, "GPUGATE_CLASS=power.off"));
  EXPECT_TRUE(has(f, "GPUGATE_VERDICT=denied"));
  EXPECT_TRUE(has(f, "GPUGATE_COMMAND=NV2080_CTRL_CMD_GPU_SET_POWER"));
  EXPECT_TRUE(has(f, "GPUGATE_PCI=0000:3b:00.0"));
  EXPECT_TRUE(has(f, "GPUGATE_PID=4242"));
  EXPECT_TRUE(has(f, "GPUGATE_COMM=nvidia-smi"));
  // No field for what the record lacks (no grant here).
  for (const auto& x : f) EXPECT_NE(x.rfind("GPUGATE_GRANT=", 0), 0u) << x;
}

TEST(Journal, PriorityFollowsTheVerdictAndWhatHappened) {
  auto r = denied_ioctl();
  EXPECT_EQ(journal_priority(r), LOG_WARNING);
  r["verdict"] = "would-deny";
  EXPECT_EQ(journal_priority(r), LOG_NOTICE);
  r["verdict"] = "allowed";
  EXPECT_EQ(journal_priority(r), LOG_INFO);
  r["grant"] = {{"id", 7}};
  EXPECT_EQ(journal_priority(r), LOG_NOTICE) << "an authorization was used";
  EXPECT_TRUE(has(journal_fields(r, "x"), "GPUGATE_GRANT=7"));
  EXPECT_EQ(journal_priority(ordered_json{{"type", "state.unexplained"}}), LOG_CRIT);
  EXPECT_EQ(journal_priority(ordered_json{{"type", "daemon.crash"}}), LOG_CRIT);
  EXPECT_EQ(journal_priority(ordered_json{{"type", "alarm"}}), LOG_ERR);
  EXPECT_EQ(journal_priority(ordered_json{{"type", "gap"}}), LOG_WARNING);
  EXPECT_EQ(journal_priority(ordered_json{{"type", "daemon.start"}}), LOG_INFO);
}

TEST(Journal, AStateRecordNamesItsGpuAndFieldAndOddRecordsStillLog) {
  auto f = journal_fields(
      ordered_json{
          {"type", "state.unexplained"}, {"seq", 9}, {"gpu", {{"pci", "0000:01:00.0"}}}, {"field", "power.on"}},
      "line");
  EXPECT_TRUE(has(f, "PRIORITY=2"));
  EXPECT_TRUE(has(f, "GPUGATE_PCI=0000:01:00.0"));
  EXPECT_TRUE(has(f, "GPUGATE_FIELD=power.on"));
  // Wrong types never throw: the line is logged with what can be read.
  auto odd = journal_fields(ordered_json{{"type", 5}, {"decoded", "x"}, {"process", nullptr}}, "odd");
  EXPECT_EQ(odd.front(), "MESSAGE=odd");
}

TEST(ServiceStatus, OneLineWithWhatStatusLeadsWith) {
  auto st = nlohmann::json::parse(R"({"mode": "enforce", "engine": "bpf",
    "engines": [{"engine": "bpf", "mode": "enforce"}, {"engine": "kmod", "mode": "enforce"}],
    "records": 1200, "lost": 0, "gaps": 1,
    "hooks": [{"hook": "a", "attached": true}, {"hook": "b", "attached": false},
              {"hook": "c", "attached": false, "needed": false}],
    "watch": {"gpus": 8, "unexplained": 2}})");
  EXPECT_EQ(service_status_line(st),
            "enforce via bpf+kmod; 1200 records, 0 lost, 1 gaps; 1/2 hooks attached; 8 GPUs watched, 2 "
            "unexplained changes");
}

// A stand-in for systemd's notify socket.
struct NotifySocket {
  TempDir dir;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  std::string path = (dir.path / "notify").string();
  NotifySocket() {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, sizeof(a.sun_path) - 1);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  }
  ~NotifySocket() { close(fd); }
  std::optional<std::string> next() {
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }
};

struct Env {
  std::vector<std::string> names;
  void set(const std::string& k, const std::string& v) {
    setenv(k.c_str(), v.c_str(), 1);
    names.push_back(k);
  }
  ~Env() {
    for (const auto& k : names) unsetenv(k.c_str());
  }
};

TEST(Notify, ReadyStatusWatchdogAndStoppingReachTheServiceManager) {
  NotifySocket sock;
  Env env;
  env.set("NOTIFY_SOCKET", sock.path);
  env.set("WATCHDOG_USEC", "200000");
  env.set("WATCHDOG_PID", std::to_string(getpid()));
  ServiceNotifier n;
  EXPECT_TRUE(n.watchdog_enabled());
  EXPECT_EQ(n.watchdog_usec(), 200000u);
  n.ready("enforce via bpf");
  auto ready = sock.next();
  ASSERT_TRUE(ready);
  EXPECT_NE(ready->find("READY=1"), std::string::npos);
  EXPECT_NE(ready->find("STATUS=enforce via bpf"), std::string::npos);
  EXPECT_NE(ready->find("MAINPID=" + std::to_string(getpid())), std::string::npos);

  // Pings at half the interval, on the loop's clock, not before.
  auto t0 = std::chrono::steady_clock::now();
  n.tick(t0 + 50ms);
  EXPECT_FALSE(sock.next());
  n.tick(t0 + 101ms);
  EXPECT_EQ(sock.next(), "WATCHDOG=1");
  n.tick(t0 + 150ms);
  EXPECT_FALSE(sock.next());
  n.tick(t0 + 202ms);
  EXPECT_EQ(sock.next(), "WATCHDOG=1");
  EXPECT_EQ(n.pings(), 2u);

  n.status("enforce via bpf");  // unchanged: nothing sent
  EXPECT_FALSE(sock.next());
  n.status("enforce via bpf; 1 gaps");
  EXPECT_EQ(sock.next(), "STATUS=enforce via bpf; 1 gaps");
  n.stopping("stopping");
  EXPECT_EQ(sock.next(), "STOPPING=1\nSTATUS=stopping");
}

TEST(Notify, WithoutAServiceManagerNothingIsSentAndNoWatchdog) {
  unsetenv("NOTIFY_SOCKET");
  ServiceNotifier n;
  EXPECT_FALSE(n.watchdog_enabled());
  n.ready("x");
  n.tick(std::chrono::steady_clock::now() + 1h);
  EXPECT_EQ(n.pings(), 0u);
}

TEST(Notify, AnotherProcesssWatchdogIsNotOurs) {
  NotifySocket sock;
  Env env;
  env.set("NOTIFY_SOCKET", sock.path);
  env.set("WATCHDOG_USEC", "200000");
  env.set("WATCHDOG_PID", std::to_string(getpid() + 1));
  ServiceNotifier n;
  EXPECT_FALSE(n.watchdog_enabled());
}

// systemd itself reads the unit: no unknown key, no bad value, and the
// binary it starts is where the package puts it.
TEST(Unit, SystemdVerifiesTheUnitAndItsHardening) {
  TempDir dir;
  std::string unit = gpugate::test::slurp(kSource + "/dist/systemd/gpugated.service");
  ASSERT_NE(unit.find("ExecStart=/usr/sbin/gpugated "), std::string::npos);
  // The packaged path, pointed at this build's binary.
  std::string here = unit;
  here.replace(here.find("/usr/sbin/gpugated"), 18, kBin + "/gpugated");
  std::ofstream(dir.path / "gpugated.service") << here;
  std::string file = (dir.path / "gpugated.service").string();
  auto r = run_shell("systemd-analyze verify --man=no " + file);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "") << "every warning of systemd-analyze verify counts (a bad value is only a warning)";
  auto sec = run_shell("systemd-analyze security --offline=yes --threshold=45 " + file);
  EXPECT_EQ(sec.status, 0) << "exposure above 4.5; it was 4.0 (OK) when written:\n" << sec.output;
  for (const char* want : {"Type=notify", "WatchdogSec=", "Restart=always", "ProtectSystem=strict", "ProtectHome=yes",
                           "NoNewPrivileges=yes", "CapabilityBoundingSet=", "ReadWritePaths=/var/lib/gpugate"})
    EXPECT_NE(unit.find(want), std::string::npos) << want;
  // The flags the unit passes are the daemon's.
  auto help = run_shell(kBin + "/gpugated --help");
  for (const char* flag : {"--policy", "--journald"}) EXPECT_NE(help.output.find(flag), std::string::npos) << flag;
}

// Completion words come from --help: a subcommand, a sub-subcommand and a
// flag complete, and a path flag completes files.
TEST(Completion, WordsComeFromTheProgramsOwnHelp) {
  TempDir dir;
  std::ofstream(dir.path / "t.sh") << "_init_completion() { words=(\"${COMP_WORDS[@]}\"); cword=$COMP_CWORD; "
                                      "cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; }\n"
                                      "_filedir() { COMPREPLY=(FILES); }\n"
                                      ". "
                                   << kSource << "/dist/bash-completion/gpugate\n"
                                   << "PATH=" << kBin << ":$PATH\n"
                                   << "t() { COMP_WORDS=(\"$@\"); COMP_CWORD=$(($#-1)); _gpugate; "
                                      "echo \"$*=>${COMPREPLY[*]}\"; }\n"
                                      "t gpugate lo\nt gpugate log ve\nt gpugated --metr\nt gpugated --policy ''\n";
  auto r = run_shell("bash " + (dir.path / "t.sh").string());
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("gpugate lo=>log\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("gpugate log ve=>verify verify-proof\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("gpugated --metr=>--metrics-listen --metrics-textfile\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("gpugated --policy =>FILES\n"), std::string::npos) << r.output;
}

}  // namespace
