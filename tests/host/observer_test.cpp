// The live chain on this kernel: gpugated's BPF observer sees real ioctls
// on a GPU-alias device, decodes them, and the ledger holds them with the
// right process, device, command, class and result. Needs root; fails
// (never skips) without it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "gpugate/bpf_engine.hpp"
#include "gpugate/decode.hpp"
#include "ia32.hpp"
#include "ledger_read.hpp"
#include "nvabi.hpp"
#include "process.hpp"
#include "status_wait.hpp"
#include "tempdir.hpp"

using namespace gpugate;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const std::string kBin = GG_BIN_DIR;
// The stand-in GPU node: a character device nothing else issues ioctls on
// (the demo and the benchmarks use /dev/full, so tests stay clear of them).
const std::string kAlias = "/dev/kmsg";
const std::string kAliasRdev = "1:11";

using gpugate::test::TempDir;

using gpugate::test::slurp;
using gpugate::test::spawn;
using gpugate::test::wait_exit;

using gpugate::test::ledger_records;  // every segment of a ledger directory

class Observer : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(geteuid(), 0u) << "host tests need root (BPF tracepoints): run them with sudo"; }
};

}  // namespace

// Both ways of finding an fd's device: "auto" takes BTF loads with
// bpf_rdonly_cast where the kernel has it (6.2 and later), "core" forces the
// CO-RE probe reads that Debian's 6.1 gets.
class ObserverLookup : public Observer, public ::testing::WithParamInterface<const char*> {};
INSTANTIATE_TEST_SUITE_P(FdLookup, ObserverLookup, ::testing::Values("auto", "core"));

TEST_P(ObserverLookup, DaemonRecordsRealIoctlsOnAnAliasDevice) {
  TempDir dir;
  auto ledger = dir.path / "ledger", status = dir.path / "status.json";
  pid_t daemon = spawn({kBin + "/gpugated", "--no-discover", "--device", kAlias + "=nvidia", "--ledger",
                        ledger.string(), "--status-file", status.string(), "--state-dir", dir.path.string(),
                        "--fd-lookup", GetParam(), "--mode", "observe"},
                       dir.path / "daemon.out");
  ASSERT_TRUE(gpugate::test::wait_for_status(status)) << slurp(dir.path / "daemon.out");

  // Other devices, from this process: must produce nothing.
  for (const char* other : {"/dev/null", "/dev/zero"}) {
    int fd = open(other, O_RDONLY);
    ASSERT_GE(fd, 0);
    uint8_t buf[32] = {};
    for (int i = 0; i < 50; i++) ioctl(fd, 0xC020462A, buf);
    close(fd);
  }
  pid_t client = spawn({kBin + "/gpugate-nvclient", kAlias, "demo"}, dir.path / "client.out");
  ASSERT_EQ(wait_exit(client), 0) << slurp(dir.path / "client.out");

  // The daemon reads every 20 ms and writes status every second.
  std::this_thread::sleep_for(1500ms);
  kill(daemon, SIGTERM);
  ASSERT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");

  auto recs = ledger_records(ledger, "ioctl");
  ASSERT_EQ(recs.size(), 10u) << gpugate::test::ledger_text(ledger);
  const char* classes[] = {"resource",  "query",     "query",       "power.limit", "power.limit",
                           "power.off", "power.off", "clock.limit", "power.off",   "resource"};
  const char* commands[] = {"NV_ESC_RM_ALLOC(NV01_ROOT_CLIENT)",      "NV2080_CTRL_CMD_GPU_GET_NAME_STRING",
                            "NV0000_CTRL_CMD_GPU_QUERY_DRAIN_STATE",  "NV2080_CTRL_CMD_PERF_RATED_TDP_SET_CONTROL",
                            "NV2080_CTRL_LEGACY_PMGR_0x2080e601",     "NV2080_CTRL_CMD_GPU_SET_POWER",
                            "NV0000_CTRL_CMD_GPU_MODIFY_DRAIN_STATE", "NV2080_CTRL_CMD_PERF_BOOST",
                            "NV2080_CTRL_CMD_GPU_SET_POWER",          "NV_ESC_RM_FREE"};
  for (size_t i = 0; i < recs.size(); i++) {
    const auto& r = recs[i];
    SCOPED_TRACE(r.dump());
    EXPECT_EQ(r["process"]["pid"], client);
    EXPECT_EQ(r["process"]["tid"], client);
    EXPECT_EQ(r["process"]["comm"], "gpugate-nvclien");  // TASK_COMM_LEN cuts it
    EXPECT_EQ(r["process"]["uid"], 0);
    auto exe = r["process"]["exe"].get<std::string>();
    EXPECT_TRUE(exe.ends_with("gpugate-nvclient")) << exe;
    EXPECT_GT(r["process"]["cgroup_id"].get<uint64_t>(), 0u);
    EXPECT_EQ(r["device"]["rdev"], kAliasRdev);
    EXPECT_EQ(r["device"]["alias"], true);
    EXPECT_EQ(r["device"]["kind"], "nvidia-ctl");
    EXPECT_EQ(r["decoded"]["class"], classes[i]);
    EXPECT_EQ(r["decoded"]["command"], commands[i]);
    EXPECT_EQ(r["result"]["ret"], -25) << "the alias driver answers ENOTTY";
    EXPECT_EQ(r["result"]["error"]["name"], "ENOTTY");
    EXPECT_FALSE(r.contains("kernel_decoded")) << "kernel and user space decode the same bytes differently";
    EXPECT_EQ(r["engine"], "bpf");
    EXPECT_EQ(r["mode"], "observe");
    bool gated = r["rule"]["action"] == "require-signature";
    EXPECT_EQ(r["verdict"], gated ? "would-deny" : "allowed");
  }
  EXPECT_EQ(recs[5]["decoded"]["params"]["newLevel"], 4);
  EXPECT_EQ(recs[6]["decoded"]["params"]["flags"], 1);
  EXPECT_EQ(recs[6]["decoded"]["params"]["newState"], 1);
  EXPECT_EQ(recs[3]["decoded"]["params"]["input"], 2);
  auto flags7 = recs[7]["decoded"]["flags"];
  EXPECT_NE(std::find(flags7.begin(), flags7.end(), "noncanonical-request"), flags7.end());
  auto flags8 = recs[8]["decoded"]["flags"];
  EXPECT_NE(std::find(flags8.begin(), flags8.end(), "xfer"), flags8.end());
  EXPECT_EQ(recs[8]["decoded"]["request"], "NV_ESC_IOCTL_XFER_CMD");
  EXPECT_EQ(recs[4]["decoded"]["class_source"], "inferred");

  ASSERT_EQ(ledger_records(ledger, "daemon.start").size(), 1u);
  auto stop = ledger_records(ledger, "daemon.stop");
  ASSERT_EQ(stop.size(), 1u);
  EXPECT_EQ(stop[0]["seen"], 10);
  EXPECT_EQ(stop[0]["lost"], 0);
  EXPECT_EQ(stop[0]["reason"], "signal");

  // gpugate tail renders the same records for people.
  pid_t tail = spawn({kBin + "/gpugate", "tail", "--ledger", ledger.string(), "-n", "20"}, dir.path / "tail.out");
  ASSERT_EQ(wait_exit(tail), 0);
  auto text = slurp(dir.path / "tail.out");
  EXPECT_NE(text.find("NV2080_CTRL_CMD_GPU_SET_POWER via NV_ESC_IOCTL_XFER_CMD [power.off]"), std::string::npos)
      << text;
  EXPECT_NE(text.find("alias of nvidiactl at /dev/kmsg"), std::string::npos);

  // The daemon signed what it wrote at shutdown: the ledger verifies with its key.
  pid_t verify =
      spawn({kBin + "/gpugate", "log", "verify", ledger.string(), "--key", (dir.path / "log-key.pub").string()},
            dir.path / "verify.out");
  EXPECT_EQ(wait_exit(verify), 0) << slurp(dir.path / "verify.out");
  ASSERT_FALSE(ledger_records(ledger, "checkpoint").empty());
  EXPECT_EQ(ledger_records(ledger, "checkpoint").back()["reason"], "shutdown");
}

// Under a burst every GPU ioctl is either recorded or counted as lost:
// nothing vanishes. The reader sleeps through the burst, so the ring
// overflows and the loss counters are exercised, not just zero.
TEST_F(Observer, BurstIsRecordedOrCountedExactly) {
  DeviceTable devices;
  ASSERT_TRUE(devices.add_alias(kAlias + "=nvidia").ok());
  BpfEngine engine(
      BpfEngineOptions{.wakeup_bytes = 64u << 20, .ring_bytes = 16u << 20});  // never wake the reader early
  auto hooks = engine.start(devices);
  ASSERT_TRUE(hooks.ok()) << hooks.error().message;

  struct Counter : EventHandler {
    uint32_t pid = 0;
    uint64_t enters = 0, exits = 0, other = 0;
    void on_enter(const gg_ioctl_enter& e) override { (e.hdr.pid == pid ? enters : other)++; }
    void on_exit(const gg_ioctl_exit& x) override { exits += x.hdr.pid == pid; }
  } counter;

  constexpr long kCalls = 60000;  // about 43 MB of records: more than the 16 MiB ring holds
  TempDir dir;
  pid_t client = spawn({kBin + "/gpugate-nvclient", kAlias, "loop", std::to_string(kCalls)}, dir.path / "client.out");
  counter.pid = static_cast<uint32_t>(client);
  ASSERT_EQ(wait_exit(client), 0) << slurp(dir.path / "client.out");
  for (int i = 0; i < 1000; i++) {
    auto n = engine.poll(10ms, counter);
    ASSERT_TRUE(n.ok());
    if (*n == 0) break;
  }
  auto stats = engine.stats();
  uint64_t lost = stats.per_class[GG_CLASS_POWER_OFF].dropped;
  EXPECT_GT(lost, 0u) << "the ring should have overflowed";
  EXPECT_EQ(counter.enters + lost, static_cast<uint64_t>(kCalls))
      << "recorded " << counter.enters << " + lost " << lost << " != issued " << kCalls;
  EXPECT_EQ(stats.per_class[GG_CLASS_POWER_OFF].seen, counter.enters);
  EXPECT_EQ(counter.other, 0u);
  // Every recorded entry has its exit, or the exit is counted as lost too.
  EXPECT_EQ(counter.exits + stats.per_class[GG_CLASS_POWER_OFF].exit_dropped, counter.enters);
}

// A flood refills the ring as fast as it is read: one poll must still
// return, or the daemon's loop (control socket, status, checkpoints, the
// watchdog) waits for the flood to end. Before the bound it did: the
// status file said 0 records for as long as a flood lasted.
TEST_F(Observer, APollReturnsWhileAFloodRefillsTheRing) {
  DeviceTable devices;
  ASSERT_TRUE(devices.add_alias(kAlias + "=nvidia").ok());
  BpfEngine engine(BpfEngineOptions{.ring_bytes = 1u << 20});
  auto hooks = engine.start(devices);
  ASSERT_TRUE(hooks.ok()) << hooks.error().message;
  struct Slow : EventHandler {  // a reader slower than any writer
    uint64_t records = 0;
    void on_enter(const gg_ioctl_enter&) override { wait(); }
    void on_exit(const gg_ioctl_exit&) override { wait(); }
    void wait() {
      records++;
      std::this_thread::sleep_for(10us);
    }
  } slow;
  TempDir dir;
  // Tens of seconds of calls or more: killed once the poll returned.
  pid_t client = spawn({kBin + "/gpugate-nvclient", kAlias, "loop", "50000000"}, dir.path / "client.out");
  for (int i = 0; i < 2000 && engine.stats().per_class[GG_CLASS_POWER_OFF].dropped == 0; i++)
    std::this_thread::sleep_for(10ms);  // until the ring is full
  ASSERT_GT(engine.stats().per_class[GG_CLASS_POWER_OFF].dropped, 0u) << slurp(dir.path / "client.out");
  auto n = engine.poll(0ms, slow);
  bool flooding = waitpid(client, nullptr, WNOHANG) == 0;
  kill(client, SIGKILL);
  wait_exit(client);
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_TRUE(flooding) << "the poll returned only when the flood ended";
  EXPECT_EQ(slow.records, *n);
  EXPECT_GT(*n, 0u);
  // 4,096 records at 10 us or more each outlast the 20 ms bound.
  EXPECT_LT(*n, Engine::kMaxRecordsPerPoll) << "the time bound comes first for a slow reader";
  EXPECT_TRUE(engine.backlog());
  auto rest = engine.poll(0ms, slow);  // the flood is over: the ring empties
  ASSERT_TRUE(rest.ok());
  while (engine.backlog()) ASSERT_TRUE(engine.poll(0ms, slow).ok());
  EXPECT_FALSE(engine.backlog());
}

// The same through gpugated: its status file moves while the flood lasts.
TEST_F(Observer, TheDaemonsLoopComesRoundDuringAFlood) {
  TempDir dir;
  auto status = dir.path / "status.json";
  pid_t daemon =
      spawn({kBin + "/gpugated", "-q", "--no-discover", "--device", kAlias + "=nvidia", "--ledger",
             (dir.path / "ledger").string(), "--status-file", status.string(), "--state-dir", dir.path.string(),
             "--mode", "observe", "--no-pin"},  // in a guest with BPF LSM the default would pin a gate
            dir.path / "daemon.out");
  ASSERT_TRUE(gpugate::test::wait_for_status(status)) << slurp(dir.path / "daemon.out");
  pid_t client = spawn({kBin + "/gpugate-nvclient", kAlias, "loop", "50000000"}, dir.path / "client.out");
  uint64_t first = 0;
  bool moved = gpugate::test::wait_for_status(status, [&](const nlohmann::json& j) {
    uint64_t lost = 0;
    if (j.contains("per_class") && j["per_class"].is_object())
      for (const auto& c : j["per_class"]) lost += c.value("dropped", uint64_t{0});
    uint64_t records = j.value("records", uint64_t{0});
    if (lost == 0 || records == 0) return false;  // not yet a flood the ring cannot hold
    if (first == 0) first = records;
    return records > first;  // a second status written during the flood
  });
  bool flooding = waitpid(client, nullptr, WNOHANG) == 0;
  kill(client, SIGKILL);
  wait_exit(client);
  kill(daemon, SIGTERM);
  EXPECT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  EXPECT_TRUE(moved) << slurp(status);
  EXPECT_TRUE(flooding) << "the status moved only after the flood ended";
}

TEST_F(Observer, DaemonRefusesBadArgumentsClearly) {
  TempDir dir;
  pid_t d = spawn(
      {kBin + "/gpugated", "--no-discover", "--device", "/dev/nope=nvidia", "--ledger", (dir.path / "l").string()},
      dir.path / "out");
  EXPECT_EQ(wait_exit(d), 2);
  EXPECT_NE(slurp(dir.path / "out").find("/dev/nope"), std::string::npos);
}

// -q: the self-test goes to the daemon.start record only, not to stderr.
TEST_F(Observer, QuietPrintsNoSelfTestButRecordsIt) {
  TempDir dir;
  auto ledger = dir.path / "ledger";
  pid_t d = spawn(
      {kBin + "/gpugated", "-q", "--no-discover", "--device", kAlias + "=nvidia", "--ledger", ledger.string(),
       "--state-dir", dir.path.string(), "--mode", "observe", "--no-pin", "--control-socket", "", "--duration", "1"},
      dir.path / "out");
  ASSERT_EQ(wait_exit(d), 0) << slurp(dir.path / "out");
  std::string out = slurp(dir.path / "out");
  EXPECT_EQ(out.find("self-test"), std::string::npos) << out;
  EXPECT_EQ(out.find("  hook "), std::string::npos) << out;
  auto starts = gpugate::test::ledger_records(ledger, "daemon.start");
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_FALSE(starts[0]["hooks"].empty()) << starts[0].dump();
}

// 32-bit callers (int 0x80) take the kernel's compat path, which the
// syscalls/sys_enter_ioctl event skips on x86-64: the raw sys_enter
// tracepoint records them, touched page or not, with their results.
TEST_F(Observer, ThirtyTwoBitCallersAreRecorded) {
  // Where the kernel refuses 32-bit system calls there is no 32-bit caller
  // to record: that is asserted, and said; the vm venue requires them.
  test::Ia32 ia32 = test::ia32_syscalls();
  ASSERT_NE(ia32, test::Ia32::kOther) << "a 32-bit getpid neither ran nor was refused with SIGSEGV";
  if (ia32 == test::Ia32::kRefusedByKernel)
    ASSERT_FALSE(test::ia32_required()) << "this venue must run 32-bit callers, and its kernel refuses them";
  TempDir dir;
  auto ledger = dir.path / "ledger", status = dir.path / "status.json";
  pid_t daemon =
      spawn({kBin + "/gpugated", "--no-discover", "--device", kAlias + "=nvidia", "--ledger", ledger.string(),
             "--status-file", status.string(), "--state-dir", dir.path.string(), "--mode", "observe"},
            dir.path / "daemon.out");
  ASSERT_TRUE(gpugate::test::wait_for_status(status)) << slurp(dir.path / "daemon.out");
  auto st = nlohmann::json::parse(slurp(status));
  nlohmann::json raw_tp;
  for (const auto& h : st["hooks"])
    if (h["hook"] == "raw_tp/sys_enter") raw_tp = h;
  ASSERT_FALSE(raw_tp.is_null()) << st.dump();
  if (ia32 == test::Ia32::kRefusedByKernel) {
    // Nothing to record, so nothing paid on every syscall: the daemon's own
    // probe agrees with this one and leaves the raw tracepoints out.
    EXPECT_EQ(raw_tp["attached"], false) << raw_tp.dump();
    EXPECT_EQ(raw_tp["needed"], false) << raw_tp.dump();
    kill(daemon, SIGTERM);
    EXPECT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
    std::printf(
        "note: this kernel refuses 32-bit system calls (int 0x80 faults): no 32-bit caller can reach a GPU "
        "node here, and gpugated leaves the raw tracepoints out; the vm venue records them\n");
    return;
  }
  EXPECT_EQ(raw_tp["attached"], true) << st.dump();

  int fd = open(kAlias.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  uint8_t* page = test::low_page();
  ASSERT_NE(page, nullptr);
  struct Control {
    uint32_t client, object, cmd, flags;
    uint64_t params;
    uint32_t size, status;
  };
  auto* params = reinterpret_cast<uint32_t*>(page + 256);
  params[0] = 0, params[1] = 4, params[2] = 0;
  *reinterpret_cast<Control*>(page) = {0xc1d00001, 0xcaf00001, 0x20800112, 0, reinterpret_cast<uint64_t>(params),
                                       12,         0};
  EXPECT_EQ(test::ioctl_ia32(fd, 0xC020462A, test::low32(page)), -ENOTTY);
  // A page the process never touched: the tracepoint cannot fault it in,
  // and the record says so rather than guessing.
  void* untouched =
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT | MAP_NORESERVE, -1, 0);
  ASSERT_NE(untouched, MAP_FAILED);
  EXPECT_EQ(test::ioctl_ia32(fd, 0xC020462A, test::low32(untouched)), -ENOTTY);
  close(fd);
  std::this_thread::sleep_for(1500ms);
  kill(daemon, SIGTERM);
  ASSERT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");

  std::vector<nlohmann::json> mine;
  for (const auto& r : ledger_records(ledger, "ioctl"))
    if (r["process"]["pid"] == getpid()) mine.push_back(r);
  ASSERT_EQ(mine.size(), 2u) << gpugate::test::ledger_text(ledger);
  for (const auto& r : mine) {
    SCOPED_TRACE(r.dump());
    EXPECT_EQ(r["hook"], "raw_tp/sys_enter");
    EXPECT_EQ(r["device"]["rdev"], kAliasRdev);
    EXPECT_EQ(r["result"]["ret"], -ENOTTY) << "the exit of a 32-bit call is joined too";
  }
  EXPECT_EQ(mine[0]["decoded"]["command"], "NV2080_CTRL_CMD_GPU_SET_POWER");
  EXPECT_EQ(mine[0]["decoded"]["class"], "power.off");
  EXPECT_EQ(mine[0]["verdict"], "would-deny");
  EXPECT_EQ(mine[1]["decoded"]["class"], "unknown");
  EXPECT_EQ(mine[1]["request"]["unreadable"], nlohmann::json::array({"arg"}));
  auto why = mine[1]["request"]["capture"];
  EXPECT_NE(std::find(why.begin(), why.end(), "not-resident"), why.end()) << why.dump();
  auto flags = mine[1]["decoded"]["flags"];
  EXPECT_NE(std::find(flags.begin(), flags.end(), "undecided"), flags.end());
  munmap(page, 4096);
  munmap(untouched, 4096);
}

// Recording levels on the live path (issue 15): with query and resource at
// summary, the real BPF observer's plain calls become summaries, and what a
// summary may not hide stays a record per call: the demo's gated commands,
// and a query whose bytes the tracepoint could not read (an attacker's page
// the process never touched).
TEST_F(Observer, SummaryLevelsOnTheLivePath) {
  TempDir dir;
  auto ledger = dir.path / "ledger", status = dir.path / "status.json", policy = dir.path / "policy.toml";
  std::ofstream(policy) << "version = 1\n[record]\n\"query\" = \"summary\"\n\"resource\" = \"summary\"\n";
  pid_t daemon = spawn({kBin + "/gpugated", "--no-discover", "--device", kAlias + "=nvidia", "--ledger",
                        ledger.string(), "--status-file", status.string(), "--state-dir", dir.path.string(), "--mode",
                        "observe", "--no-pin", "--policy", policy.string()},
                       dir.path / "daemon.out");
  ASSERT_TRUE(gpugate::test::wait_for_status(status)) << slurp(dir.path / "daemon.out");
  pid_t client = spawn({kBin + "/gpugate-nvclient", kAlias, "demo"}, dir.path / "client.out");
  ASSERT_EQ(wait_exit(client), 0) << slurp(dir.path / "client.out");

  int fd = open(kAlias.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  struct Control {
    uint32_t client, object, cmd, flags;
    uint64_t params;
    uint32_t size, status;
  };
  uint32_t params[3] = {0, 1, 0};
  Control drain{0xc1d00001, 0xc1d00001, 0x279, 0, reinterpret_cast<uint64_t>(params), 12, 0};  // QUERY_DRAIN_STATE
  for (int i = 0; i < 20; i++) EXPECT_EQ(ioctl(fd, 0xC020462A, &drain), -1);
  void* untouched = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(untouched, MAP_FAILED);
  Control unread_params = drain;
  unread_params.params = reinterpret_cast<uint64_t>(untouched);
  EXPECT_EQ(ioctl(fd, 0xC020462A, &unread_params), -1);  // a query whose params could not be read
  EXPECT_EQ(ioctl(fd, 0xC020462A, untouched), -1);       // a request nothing of which could be read
  close(fd);
  std::this_thread::sleep_for(1500ms);
  kill(daemon, SIGTERM);
  ASSERT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");

  auto text = gpugate::test::ledger_text(ledger);
  std::map<int, std::vector<nlohmann::json>> full, sums;
  for (const auto& r : ledger_records(ledger, "ioctl")) full[r["process"]["pid"].get<int>()].push_back(r);
  for (const auto& r : ledger_records(ledger, "ioctl.summary")) sums[r["process"]["pid"].get<int>()].push_back(r);
  // The demo: its six judged commands in full, its two queries and two
  // resource calls one summary each.
  ASSERT_EQ(full[client].size(), 6u) << text;
  for (const auto& r : full[client]) {
    std::string cls = r["decoded"]["class"];
    EXPECT_TRUE(cls == "power.limit" || cls == "power.off" || cls == "clock.limit") << r.dump();
  }
  ASSERT_EQ(sums[client].size(), 4u) << text;
  for (const auto& s : sums[client]) {
    EXPECT_EQ(s["calls"], 1) << s.dump();
    EXPECT_EQ(s["results"]["ENOTTY"], 1) << s.dump();
    EXPECT_EQ(s["engine"], "bpf");
    EXPECT_EQ(s["device"]["rdev"], kAliasRdev);
  }
  // This process: twenty readable queries in one summary, the two it could
  // not read in full (a query class with unread params, an unknown class).
  ASSERT_EQ(sums[getpid()].size(), 1u) << text;
  EXPECT_EQ(sums[getpid()][0]["calls"], 20);
  EXPECT_EQ(sums[getpid()][0]["decoded"]["command"], "NV0000_CTRL_CMD_GPU_QUERY_DRAIN_STATE");
  ASSERT_EQ(full[getpid()].size(), 2u) << text;
  EXPECT_EQ(full[getpid()][0]["decoded"]["class"], "query") << full[getpid()][0].dump();
  auto flags = full[getpid()][0]["decoded"]["flags"];
  EXPECT_NE(std::find(flags.begin(), flags.end(), "params-unreadable"), flags.end()) << full[getpid()][0].dump();
  flags = full[getpid()][1]["decoded"]["flags"];
  EXPECT_NE(std::find(flags.begin(), flags.end(), "arg-unreadable"), flags.end()) << full[getpid()][1].dump();
  auto stop = ledger_records(ledger, "daemon.stop");
  ASSERT_EQ(stop.size(), 1u);
  EXPECT_EQ(stop[0]["seen"], 32) << "a summarized call is still counted where the kernel counts";
  EXPECT_EQ(stop[0]["summarized"], 24);
  EXPECT_EQ(stop[0]["records"], 8);
  EXPECT_EQ(stop[0]["lost"], 0);
}
