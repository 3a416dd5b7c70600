// Engine -> pipeline -> ledger, with the simulation engine: the same records
// the daemon writes, checked field by field, and the ledger's own rules.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "gpugate/gate.hpp"
#include "gpugate/pipeline.hpp"
#include "gpugate/sim_engine.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "tempdir.hpp"
#include "vectors.hpp"

using namespace gpugate;
namespace fs = std::filesystem;

namespace {

using gpugate::test::TempDir;

// All records of a ledger directory, every segment in order.
std::vector<nlohmann::json> read_ledger(const fs::path& dir) {
  std::vector<nlohmann::json> out;
  for (const auto& line : gpugate::test::ledger_lines(dir)) out.push_back(nlohmann::json::parse(line));
  return out;
}

const char* kScript = R"(# GPU_SET_POWER, XFER-wrapped PERF_BOOST, a failed query
{"device":"/dev/full","ioctl":"0xc020462a","arg":"0100d0c10100f0ca120180200000000000100000000000000c00000000000000","params":"000000000400000000000000","ret":0,"nv_status":0,"pid":77,"comm":"attacker"}
{"device":"/dev/full","ioctl":"0xc01046d3","arg":"2a000000200000000020000000000000","inner":"0100d0c10100f0ca0a2080200000000000100000000000000800000000000000","params":"0200000000000000","ret":0,"nv_status":27,"pid":78}
{"device":"/dev/full","ioctl":"0xc020462a","arg":"0100d0c10100d0c1790200000000000000100000000000000c00000000000000","params":"000100000000000000000000","ret":-22,"pid":79}
)";

}  // namespace

TEST(Pipeline, SimulatedRequestsBecomeLedgerRecords) {
  TempDir dir;
  std::istringstream script(kScript);
  auto calls = parse_sim_script(script, "script");
  ASSERT_TRUE(calls.ok()) << calls.error().message;
  ASSERT_EQ(calls->size(), 3u);
  DeviceTable devices;
  ASSERT_TRUE(devices.add_alias("/dev/full=nvidia").ok());
  auto ledger = LedgerWriter::open(dir.path / "ledger");
  ASSERT_TRUE(ledger.ok());
  std::vector<std::string> lines;
  Pipeline pipeline(*ledger, devices, HostInfo{"host", "boot", "h"}, "sim",
                    [&](const nlohmann::ordered_json&, const std::string& line) { lines.push_back(line); });
  SimEngine engine(std::move(*calls));
  ASSERT_TRUE(engine.start(devices).ok());
  while (!engine.finished()) ASSERT_TRUE(engine.poll(std::chrono::milliseconds(0), pipeline).ok());
  EXPECT_EQ(pipeline.counters().records, 3u);
  EXPECT_EQ(pipeline.pending(), 0u);
  ASSERT_TRUE(pipeline.flush().ok());  // ioctl records are buffered until the batch ends

  auto recs = read_ledger(dir.path / "ledger");
  ASSERT_EQ(recs.size(), 3u);
  for (size_t i = 0; i < recs.size(); i++) EXPECT_EQ(recs[i]["seq"], i);
  const auto& r0 = recs[0];
  EXPECT_EQ(r0["type"], "ioctl");
  EXPECT_EQ(r0["host_id"], "host");
  EXPECT_EQ(r0["time"], format_utc(r0["realtime_ns"].get<int64_t>())) << "the cached clock formats as format_utc";
  EXPECT_EQ(r0["process"]["pid"], 77);
  EXPECT_EQ(r0["process"]["comm"], "attacker");
  EXPECT_EQ(r0["device"]["rdev"], "1:7");
  EXPECT_EQ(r0["device"]["alias"], true);
  EXPECT_EQ(r0["device"]["alias_of"], "nvidiactl");
  EXPECT_EQ(r0["decoded"]["command"], "NV2080_CTRL_CMD_GPU_SET_POWER");
  EXPECT_EQ(r0["decoded"]["class"], "power.off");
  EXPECT_EQ(r0["decoded"]["params"]["newLevel"], 4);
  EXPECT_EQ(r0["request"]["ioctl"], "0xc020462a");
  EXPECT_EQ(r0["request"]["params"], "000000000400000000000000");
  EXPECT_EQ(r0["result"]["ret"], 0);
  EXPECT_EQ(r0["result"]["nv_status"], 0);
  EXPECT_EQ(r0["mode"], "observe");
  EXPECT_EQ(r0["verdict"], "would-deny") << "power.off needs a signature; the sim engine cannot deny";
  EXPECT_EQ(r0["rule"]["action"], "require-signature");

  const auto& r1 = recs[1];
  EXPECT_EQ(r1["decoded"]["command"], "NV2080_CTRL_CMD_PERF_BOOST");
  EXPECT_EQ(r1["decoded"]["request"], "NV_ESC_IOCTL_XFER_CMD");
  EXPECT_EQ(r1["decoded"]["class"], "clock.limit");
  EXPECT_EQ(r1["decoded"]["params"]["flags"], 2);
  EXPECT_EQ(r1["result"]["nv_status"], 27);  // NV_ERR_INSUFFICIENT_PERMISSIONS, reported as is

  const auto& r2 = recs[2];
  EXPECT_EQ(r2["decoded"]["command"], "NV0000_CTRL_CMD_GPU_QUERY_DRAIN_STATE");
  EXPECT_EQ(r2["decoded"]["class"], "query");
  EXPECT_EQ(r2["verdict"], "allowed");
  EXPECT_EQ(r2["rule"]["action"], "log");
  EXPECT_EQ(r2["result"]["error"]["name"], "EINVAL");
  EXPECT_TRUE(r2["result"]["nv_status"].is_null());  // a failed syscall has no RM status

  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[0].find("NV2080_CTRL_CMD_GPU_SET_POWER"), std::string::npos);
  EXPECT_NE(lines[0].find("[power.off]"), std::string::npos);
  EXPECT_NE(lines[0].find("alias of nvidiactl at /dev/full"), std::string::npos);
}

TEST(Pipeline, LossesBecomeGapRecordsOncePerIncrease) {
  TempDir dir;
  DeviceTable devices;
  auto ledger = LedgerWriter::open(dir.path / "ledger");
  ASSERT_TRUE(ledger.ok());
  Pipeline pipeline(*ledger, devices, HostInfo{"h", "b", "n"}, "test", nullptr);
  EngineStats s;
  s.per_class[GG_CLASS_POWER_OFF].dropped = 5;
  pipeline.note_losses("sim", s);
  pipeline.note_losses("sim", s);  // nothing new
  s.per_class[GG_CLASS_POWER_OFF].dropped = 7;
  s.per_class[GG_CLASS_QUERY].exit_dropped = 1;
  pipeline.note_losses("sim", s);
  auto recs = read_ledger(dir.path / "ledger");
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0]["type"], "gap");
  EXPECT_EQ(recs[0]["class"], "power.off");
  EXPECT_EQ(recs[0]["lost_records"], 5);
  EXPECT_EQ(recs[1]["class"], "query") << "within one call, classes are reported in class order";
  EXPECT_EQ(recs[1]["lost_exit_records"], 1);
  EXPECT_EQ(recs[1]["lost_records"], 0);
  EXPECT_EQ(recs[2]["class"], "power.off");
  EXPECT_EQ(recs[2]["lost_records"], 2);
  EXPECT_EQ(recs[2]["lost_total"], 7);
}

TEST(Pipeline, EntryWithoutExitIsStillRecorded) {
  TempDir dir;
  DeviceTable devices;
  ASSERT_TRUE(devices.add_alias("/dev/full=nvidia").ok());
  auto ledger = LedgerWriter::open(dir.path / "ledger");
  ASSERT_TRUE(ledger.ok());
  Pipeline pipeline(*ledger, devices, HostInfo{"h", "b", "n"}, "test", nullptr);
  gg_ioctl_enter e{};
  e.hdr.type = GG_EV_IOCTL_ENTER;
  e.hdr.tid = e.hdr.pid = 5;
  e.hdr.boot_ns = 1;
  e.dev = devices.devices()[0].dev;
  e.device = devices.devices()[0].info;
  pipeline.on_enter(e);
  EXPECT_EQ(pipeline.pending(), 1u);
  pipeline.flush_stale(0);
  ASSERT_TRUE(pipeline.flush().ok());
  auto recs = read_ledger(dir.path / "ledger");
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_TRUE(recs[0]["result"]["ret"].is_null());
  EXPECT_EQ(pipeline.counters().exits_missing, 1u);
}

// An event that happened before a wall-clock step keeps the old offset
// even when its exit (and so its record) comes after the step was seen:
// its wall time is when it happened, not when it was written.
TEST(Pipeline, AWallClockStepLeavesEarlierEventsTheirOffset) {
  TempDir dir;
  DeviceTable devices;
  ASSERT_TRUE(devices.add_alias("/dev/full=nvidia").ok());
  auto ledger = LedgerWriter::open(dir.path / "ledger");
  ASSERT_TRUE(ledger.ok());
  Pipeline pipeline(*ledger, devices, HostInfo{"h", "b", "n"}, "test", nullptr);
  const int64_t old_offset = pipeline.wall_offset_at(0), hour = 3'600'000'000'000ll;
  auto enter = [&](uint32_t tid, uint64_t boot_ns, uint64_t seq) {
    gg_ioctl_enter e{};
    e.hdr.type = GG_EV_IOCTL_ENTER;
    e.hdr.tid = e.hdr.pid = tid;
    e.hdr.boot_ns = boot_ns;
    e.hdr.seq = seq;
    e.dev = devices.devices()[0].dev;
    e.device = devices.devices()[0].info;
    pipeline.on_enter(e);
  };
  auto exit = [&](uint32_t tid, uint64_t boot_ns, uint64_t enter_seq) {
    gg_ioctl_exit x{};
    x.hdr.type = GG_EV_IOCTL_EXIT;
    x.hdr.tid = x.hdr.pid = tid;
    x.hdr.boot_ns = boot_ns;
    x.enter_seq = enter_seq;
    pipeline.on_exit(x);
  };
  enter(5, 1'000, 1);  // before the step, its exit after
  EXPECT_FALSE(pipeline.follow_wall_clock(1'500, old_offset + 500'000'000)) << "half a second is a slew";
  EXPECT_TRUE(pipeline.follow_wall_clock(2'000, old_offset - hour));
  enter(6, 3'000, 2);  // after the step
  exit(5, 3'100, 1);
  exit(6, 3'200, 2);
  EXPECT_TRUE(pipeline.follow_wall_clock(4'000, old_offset + hour));
  enter(7, 1'999, 3);  // late from a ring: before the first step
  exit(7, 5'000, 3);
  ASSERT_TRUE(pipeline.flush().ok());
  std::map<int, int64_t> offset_of;
  std::vector<int64_t> jumps;
  for (const auto& r : read_ledger(dir.path / "ledger")) {
    if (r["type"] == "clock.jump") jumps.push_back(r["delta_ns"].get<int64_t>());
    if (r["type"] != "ioctl") continue;
    offset_of[r["process"]["pid"].get<int>()] =
        r["realtime_ns"].get<int64_t>() - static_cast<int64_t>(r["boottime_ns"].get<uint64_t>());
    EXPECT_EQ(r["time"], format_utc(r["realtime_ns"].get<int64_t>()));
  }
  EXPECT_EQ(jumps, (std::vector<int64_t>{-hour, 2 * hour}));
  EXPECT_EQ(offset_of[5], old_offset) << "happened before the step, written after it";
  EXPECT_EQ(offset_of[6], old_offset - hour);
  EXPECT_EQ(offset_of[7], old_offset) << "happened before both steps";
  EXPECT_EQ(pipeline.wall_offset_at(2'000), old_offset);
  EXPECT_EQ(pipeline.wall_offset_at(2'001), old_offset - hour);
  EXPECT_EQ(pipeline.wall_offset_at(4'001), old_offset + hour);
}

// The kernel numbers its records; the BPF reserve ring is read before the
// main ring, so numbers arrive out of order: only numbers never seen count.
TEST(Pipeline, KernelSequenceGapsCountOnlyNumbersNeverSeen) {
  TempDir dir;
  DeviceTable devices;
  ASSERT_TRUE(devices.add_alias("/dev/full=nvidia").ok());
  auto ledger = LedgerWriter::open(dir.path / "ledger");
  ASSERT_TRUE(ledger.ok());
  Pipeline pipeline(*ledger, devices, HostInfo{"h", "b", "n"}, "test", nullptr);
  auto enter = [&](uint64_t seq) {
    gg_ioctl_enter e{};
    e.hdr.type = GG_EV_IOCTL_ENTER;
    e.hdr.tid = e.hdr.pid = static_cast<uint32_t>(100 + seq);
    e.hdr.boot_ns = seq;
    e.hdr.seq = seq;
    e.dev = devices.devices()[0].dev;
    e.device = devices.devices()[0].info;
    pipeline.on_enter(e);
  };
  for (uint64_t seq : {10, 11, 14}) enter(seq);  // 14 from the reserve ring, read first
  EXPECT_EQ(pipeline.counters().kernel_seq_gaps, 2u) << "12 and 13 not seen yet";
  for (uint64_t seq : {12, 13}) enter(seq);
  EXPECT_EQ(pipeline.counters().kernel_seq_gaps, 0u) << "they came after all";
  enter(17);
  EXPECT_EQ(pipeline.counters().kernel_seq_gaps, 2u) << "15 and 16 lost";
}

TEST(Ledger, ContinuesSequenceAndKeepsATornLine) {
  TempDir dir;
  auto path = dir.path / "l";
  {
    auto l = LedgerWriter::open(path);
    ASSERT_TRUE(l.ok());
    ASSERT_EQ(*l->append({{"type", "a"}}), 0u);
    ASSERT_EQ(*l->append({{"type", "b"}}), 1u);
  }
  {
    auto l = LedgerWriter::open(path);
    ASSERT_TRUE(l.ok());
    EXPECT_EQ(l->next_seq(), 2u);
    EXPECT_TRUE(l->open_note().empty());
  }
  std::ofstream(path / "000001.jsonl", std::ios::app) << R"({"seq":2,"type":"tor)";  // a crash mid-write
  auto l = LedgerWriter::open(path);
  ASSERT_TRUE(l.ok());
  EXPECT_NE(l->open_note().find("torn"), std::string::npos);
  EXPECT_EQ(l->next_seq(), 3u) << "seq 2 went to the ledger.recovered record that names the torn line";
  ASSERT_TRUE(l->append({{"type", "c"}}).ok());
  auto lines = gpugate::test::ledger_lines(path);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[2], R"({"seq":2,"type":"tor)") << "the torn bytes are kept as found";
  auto rec = nlohmann::json::parse(lines[3]);
  EXPECT_EQ(rec["seq"], 2);
  EXPECT_EQ(rec["type"], "ledger.recovered");
  EXPECT_EQ(rec["torn"]["bytes"], 20);
  EXPECT_EQ(nlohmann::json::parse(lines[4])["seq"], 3);
}

TEST(Ledger, RefusesAFileThatIsNotOurs) {
  TempDir dir;
  auto path = dir.path / "notes";
  fs::create_directories(path);
  std::ofstream(path / "000001.jsonl") << "dear diary\n";
  auto l = LedgerWriter::open(path);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.error().message.find("not a gpugate record"), std::string::npos);
  std::ifstream in(path / "000001.jsonl");
  std::string s;
  std::getline(in, s);
  EXPECT_EQ(s, "dear diary");
}

TEST(SimScript, ErrorsNameTheLine) {
  std::istringstream bad("{\"device\":\"/dev/full\",\"ioctl\":\"0xc020462a\"}\n{\"device\":\"/dev/full\"}\n");
  auto r = parse_sim_script(bad, "s.jsonl");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("s.jsonl:2"), std::string::npos);
  std::istringstream hex("{\"device\":\"/dev/full\",\"ioctl\":\"0x1\",\"arg\":\"zz\"}\n");
  auto h = parse_sim_script(hex, "s");
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message.find("arg"), std::string::npos);
}

// A knob write as the BPF gate sends it: one knob.write record naming the
// GPU, the knob (from the daemon's table, by inode), the write and the verdict.
TEST(Pipeline, AKnobWriteBecomesAKnobRecord) {
  TempDir dir;
  DeviceTable devices;
  PciGpu gpu;
  gpu.address = "0000:41:00.0";
  gpu.vendor = GG_VENDOR_NVIDIA;
  Knob knob;
  knob.name = "power/control";
  knob.path = "/sys/bus/pci/devices/0000:41:00.0/power/control";
  knob.owner = "gpu";
  knob.ino = 4242;
  knob.fs_magic = GG_FS_SYSFS;
  knob.rule = GG_KNOB_RUNTIME_PM;
  knob.cls = GG_CLASS_POWER_OFF;
  gpu.knobs.push_back(knob);
  devices.set_gpus({gpu});
  auto ledger = LedgerWriter::open(dir.path / "ledger");
  ASSERT_TRUE(ledger.ok());
  Pipeline pipeline(*ledger, devices, HostInfo{"host", "boot", "h"}, "bpf", nullptr);

  gg_knob_event e{};
  e.hdr.type = GG_EV_KNOB;
  e.hdr.seq = 5;
  e.hdr.pid = 1;
  e.uid = 0;
  std::strcpy(e.comm, "sh");
  e.key = {4242, GG_FS_SYSFS, 0};
  e.knob = knob_rows(devices)[0].second;
  e.call = GG_WC_WRITE;
  e.length = 5;
  e.value_len = 5;
  std::memcpy(e.value, "auto\n", 5);
  e.hook = GG_HOOK_LSM_FILE_WRITE;
  e.mode = GG_MODE_ENFORCE;
  e.action = GG_ACT_REQUIRE_SIGNATURE;
  e.verdict = GG_VERDICT_DENY;
  e.reason = GG_WHY_CLASS;
  e.dec.cls = GG_CLASS_POWER_OFF;
  pipeline.on_knob(e);
  ASSERT_TRUE(pipeline.flush().ok());
  auto recs = read_ledger(dir.path / "ledger");
  ASSERT_EQ(recs.size(), 1u);
  const auto& r = recs[0];
  EXPECT_EQ(r["type"], "knob.write");
  EXPECT_EQ(r["gpu"]["pci"], "0000:41:00.0");
  EXPECT_EQ(r["gpu"]["grant_dev"], fmt::format("4095:{}", 0x4100));
  EXPECT_EQ(r["knob"]["name"], "power/control");
  EXPECT_EQ(r["knob"]["ino"], 4242);
  EXPECT_EQ(r["knob"]["rule"], "runtime-pm");
  EXPECT_EQ(r["write"]["call"], "write");
  EXPECT_EQ(r["write"]["value"], "auto\n");
  EXPECT_EQ(r["write"]["length"], 5);
  EXPECT_EQ(r["decoded"]["class"], "power.off");
  EXPECT_EQ(r["hook"], "lsm/file_permission");
  EXPECT_EQ(r["verdict"], "denied");
  EXPECT_NE(r["verdict_reason"].get<std::string>().find("denied before the kernel's store ran"), std::string::npos)
      << r["verdict_reason"];
  EXPECT_EQ(r["kernel_seq"], 5);
  EXPECT_EQ(pipeline.counters().knob_writes, 1u);

  // The same knob mapped: a knob.mmap record, whose reason speaks of the mapping.
  e.op = GG_KOP_MMAP;
  e.hook = GG_HOOK_LSM_MMAP_FILE;
  e.call = GG_WC_MMAP;
  e.length = 4096;
  e.prot = PROT_READ;
  e.hdr.seq = 6;
  pipeline.on_knob(e);
  ASSERT_TRUE(pipeline.flush().ok());
  recs = read_ledger(dir.path / "ledger");
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[1]["type"], "knob.mmap");
  EXPECT_EQ(recs[1]["map"]["length"], 4096);
  EXPECT_EQ(recs[1]["map"]["prot"], nlohmann::json::array({"read"}));
  EXPECT_NE(recs[1]["verdict_reason"].get<std::string>().find("denied before the mapping was made"), std::string::npos)
      << recs[1]["verdict_reason"];
  EXPECT_EQ(recs[1]["engine"], "bpf");

  // gpugate.ko's record of the same write: its engine, its own numbering
  // (no gap counted against BPF's), the kernel's length.
  e.op = GG_KOP_WRITE;
  e.hook = GG_HOOK_KMOD_KNOB_WRITE;
  e.call = GG_WC_KERNEL;
  e.length = 5;
  e.hdr.seq = 1;
  pipeline.on_knob(e);
  ASSERT_TRUE(pipeline.flush().ok());
  recs = read_ledger(dir.path / "ledger");
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[2]["engine"], "kmod");
  EXPECT_EQ(recs[2]["hook"], "kmod/knob_write");
  EXPECT_EQ(recs[2]["write"]["call"], "kernel");
  EXPECT_EQ(recs[2]["write"]["length"], 5);
  EXPECT_EQ(pipeline.counters().kernel_seq_gaps, 0u);
}

// The daemon reads a process's path in /proc when it writes the record,
// and keeps it per pid. An attacker who gets an innocent program's pid
// (pids are reused) must not have his calls recorded under its path: the
// kernel's basename of the caller's executable comes with every call, and
// a path that disagrees is not used.
TEST(Pipeline, APidReusedByAnotherProgramIsNotRecordedUnderTheFirstOnesPath) {
  TempDir dir;
  DeviceTable devices;
  ASSERT_TRUE(devices.add_alias("/dev/full=nvidia").ok());
  auto ledger = LedgerWriter::open(dir.path / "ledger");
  ASSERT_TRUE(ledger.ok());
  Pipeline pipeline(*ledger, devices, HostInfo{"h", "b", "n"}, "test", nullptr);
  pid_t sleeper = test::spawn({"/bin/sleep", "30"}, (dir.path / "sleep.out").string());
  ASSERT_GT(sleeper, 0);
  for (int i = 0; i < 500 && fs::read_symlink(fmt::format("/proc/{}/exe", sleeper)).filename() != "sleep"; i++)
    usleep(10000);  // until the child has exec'd
  auto call = [&](const char* exe_name, uint64_t cgroup_id) {
    gg_ioctl_enter e{};
    e.hdr.type = GG_EV_IOCTL_ENTER;
    e.hdr.tid = e.hdr.pid = static_cast<uint32_t>(sleeper);
    e.hdr.boot_ns = 1;
    e.cgroup_id = cgroup_id;
    std::strncpy(e.exe_name, exe_name, sizeof(e.exe_name) - 1);
    e.dev = devices.devices()[0].dev;
    e.device = devices.devices()[0].info;
    pipeline.on_enter(e);
    pipeline.flush_stale(0);
  };
  call("sleep", 1);
  call("nvidia-smi", 1);  // the pid is another program's now (or it exec'd)
  call("sleep", 1);
  call("sleep", 2);  // moved to another cgroup: read again
  kill(sleeper, SIGKILL);
  test::wait_exit(sleeper);
  ASSERT_TRUE(pipeline.flush().ok());
  auto recs = read_ledger(dir.path / "ledger");
  ASSERT_EQ(recs.size(), 4u);
  EXPECT_EQ(fs::path(recs[0]["process"]["exe"].get<std::string>()).filename(), "sleep");
  EXPECT_FALSE(recs[0]["process"].contains("exe_is_basename"));
  EXPECT_EQ(recs[1]["process"]["exe"], "nvidia-smi") << recs[1]["process"].dump();
  EXPECT_EQ(recs[1]["process"]["exe_is_basename"], true);
  EXPECT_EQ(recs[2]["process"]["exe"], recs[0]["process"]["exe"]);
  EXPECT_EQ(recs[3]["process"]["cgroup_id"], 2);
  EXPECT_EQ(recs[3]["process"]["exe"], recs[0]["process"]["exe"]);
}
