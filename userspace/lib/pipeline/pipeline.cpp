#include "gpugate/pipeline.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "gpugate/hex.hpp"
#include "gpugate/json_out.hpp"
#include "gpugate/timefmt.hpp"

namespace gpugate {
namespace {

// Why the gate decided as it did, in words, for every record it decides.
std::string verdict_reason(unsigned verdict, unsigned mode, unsigned why_code, unsigned cls_id, unsigned action_id,
                           uint32_t grant_id, unsigned capture_flags, std::string_view before_what) {
  std::string_view cls = class_name(cls_id), action = action_name(action_id);
  std::string why;
  bool refused = verdict != GG_VERDICT_ALLOW;
  switch (why_code) {
    case GG_WHY_CAPTURE: {
      auto causes = capture_reason_names(capture_flags);
      why = fmt::format("the bytes this decision needs were not read as the driver will read them ({})",
                        causes.empty() ? std::string("unreadable") : fmt::format("{}", fmt::join(causes, ", ")));
      break;
    }
    case GG_WHY_UNRECORDED: why = fmt::format("{} is {}, and no record could be reserved", cls, action); break;
    case GG_WHY_LEDGER_DOWN:
      why = fmt::format("{} is {}, and the daemon cannot write its ledger (disk_full_action deny-gated)", cls, action);
      break;
    case GG_WHY_NO_THREAD_STATE: why = "the kernel had no per-thread state for the caller"; break;
    case GG_WHY_STRICT: why = fmt::format("the strict profile gates this opaque privileged control ({})", cls); break;
    default: why = fmt::format("{} is {} and no grant covers it", cls, action);
  }
  if (refused && verdict == GG_VERDICT_DENY) return fmt::format("{}: denied {}", why, before_what);
  if (refused && mode == GG_MODE_MONITOR) return why + ": monitor mode lets it through";
  if (refused) return why + ": this hook cannot deny (observe only)";
  if (why_code == GG_WHY_UNDECIDED)
    return fmt::format(
        "{} is {}: no gate saw it before the driver ran (it never reached the driver's "
        "post-copy hooks); recorded after the call from the caller's memory",
        cls, action);
  if (grant_id) return fmt::format("{} is {}: allowed by grant {}", cls, action, grant_id);
  return fmt::format("{}: {}", cls, action);
}

}  // namespace

Pipeline::Pipeline(LedgerWriter& ledger, const DeviceTable& devices, HostInfo host, std::string engine, HumanSink sink)
    : ledger_(ledger),
      devices_(devices),
      host_(std::move(host)),
      engine_(std::move(engine)),
      sink_(std::move(sink)),
      rt_offset_(realtime_offset_ns()) {}

namespace {

// Whether /proc/PID/exe names the program the kernel named with the call:
// if not, the pid is another process's now (or it exec'd) and the path
// would put a record on a program that never made the call.
bool same_program(std::string_view path, std::string_view kernel_name) {
  if (kernel_name.empty()) return true;  // nothing to check against
  constexpr std::string_view kDeleted = " (deleted)";
  if (path.ends_with(kDeleted)) path.remove_suffix(kDeleted.size());
  size_t slash = path.rfind('/');
  std::string_view base = slash == std::string_view::npos ? path : path.substr(slash + 1);
  if (kernel_name.size() == GG_EXE_NAME_LEN - 1) return base.starts_with(kernel_name);  // the kernel's copy was cut
  return base == kernel_name;
}

}  // namespace

const Pipeline::ProcInfo& Pipeline::proc_info(uint32_t pid, std::string_view kernel_exe_name, uint64_t cgroup_id) {
  auto it = procs_.find(pid);
  if (it != procs_.end() && it->second.kernel_exe_name == kernel_exe_name && it->second.cgroup_id == cgroup_id)
    return it->second;
  if (it == procs_.end() && procs_.size() > 4096) procs_.clear();
  ProcInfo p;
  p.kernel_exe_name = kernel_exe_name;
  p.cgroup_id = cgroup_id;
  char buf[4096];
  auto exe = fmt::format("/proc/{}/exe", pid);
  ssize_t n = readlink(exe.c_str(), buf, sizeof(buf) - 1);
  if (n > 0) p.exe.assign(buf, static_cast<size_t>(n));
  if (!same_program(p.exe, kernel_exe_name)) p.exe.clear();
  std::ifstream cg(fmt::format("/proc/{}/cgroup", pid));
  std::string line;
  while (std::getline(cg, line))
    if (line.starts_with("0::")) p.cgroup = line.substr(3);
  return procs_.insert_or_assign(pid, std::move(p)).first->second;
}

nlohmann::ordered_json Pipeline::base(const std::string& type, uint64_t boot_ns) {
  nlohmann::ordered_json j;
  j["seq"] = 0;  // set by the ledger
  j["type"] = type;
  int64_t realtime = static_cast<int64_t>(boot_ns) + wall_offset_at(boot_ns);
  j["time"] = format_utc(realtime);
  j["realtime_ns"] = realtime;
  j["boottime_ns"] = boot_ns;
  j["boot_id"] = host_.boot_id;
  j["host_id"] = host_.host_id;
  return j;
}

std::string_view Pipeline::utc(int64_t realtime_ns, char* buf) {
  int64_t second = realtime_ns / 1000000000;
  if (second != utc_second_) {
    std::string full = format_utc(second * 1000000000, 9);  // "...SS.000000000Z"
    std::memcpy(utc_prefix_, full.data(), 20);              // "YYYY-MM-DDTHH:MM:SS."
    utc_second_ = second;
  }
  std::memcpy(buf, utc_prefix_, 20);
  int64_t frac = realtime_ns % 1000000000;
  for (int i = 28; i >= 20; i--) {
    buf[i] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  buf[29] = 'Z';
  return {buf, 30};
}

void Pipeline::write_process(JsonOut& o, const gg_ioctl_enter& e, bool with_tid) {
  std::string_view exe_name(e.exe_name, strnlen(e.exe_name, GG_EXE_NAME_LEN));
  const auto& proc = proc_info(e.hdr.pid, exe_name, e.cgroup_id);
  o.begin_object();
  o.field("pid", e.hdr.pid);
  if (with_tid) o.field("tid", e.hdr.tid);
  o.field("uid", e.uid).field("gid", e.gid);
  o.field("comm", std::string_view(e.comm, strnlen(e.comm, GG_COMM_LEN)));
  if (!proc.exe.empty()) {
    o.field("exe", std::string_view(proc.exe));
  } else if (!exe_name.empty()) {
    o.field("exe", exe_name);  // gone, or its pid is another program's: the kernel's basename is what is known
    o.field("exe_is_basename", true);
  } else {
    o.key("exe").null();
  }
  o.field("cgroup_id", static_cast<uint64_t>(e.cgroup_id));
  if (proc.cgroup.empty())
    o.key("cgroup").null();
  else
    o.field("cgroup", std::string_view(proc.cgroup));
  o.end_object();
}

std::optional<uint32_t> Pipeline::rm_object_class(const gg_ioctl_enter& e) const {
  if (e.dec.nr != 0x2A || e.dec.table == GG_TAB_NONE) return std::nullopt;
  auto obj = rm_objects_.find({uint64_t{e.hdr.pid} << 32 | e.dec.client, e.dec.object});
  if (obj == rm_objects_.end()) return std::nullopt;
  return obj->second;
}

void Pipeline::count_ioctl(const gg_ioctl_enter& e) {
  unsigned verdict = e.verdict == GG_VERDICT_DENY ? 1 : e.verdict == GG_VERDICT_WOULD_DENY ? 2 : 0;
  ioctl_counts_[e.dec.cls & (GG_CLASS_COUNT - 1)][e.device.vendor < GG_VENDOR_COUNT ? e.device.vendor : 0][verdict]++;
}

std::string Pipeline::build_record(const gg_ioctl_enter& e, const gg_ioctl_exit* x, CommandSeen* seen) {
  std::string text;
  text.reserve(2048);
  JsonOut o(text);
  int64_t realtime = static_cast<int64_t>(e.hdr.boot_ns) + wall_offset_at(e.hdr.boot_ns);
  o.field("type", "ioctl");
  char timebuf[40];
  o.field("time", utc(realtime, timebuf));
  o.field("realtime_ns", realtime);
  o.field("boottime_ns", static_cast<uint64_t>(e.hdr.boot_ns));
  o.field("boot_id", std::string_view(host_.boot_id));
  o.field("host_id", std::string_view(host_.host_id));

  o.key("process");
  write_process(o, e, true);

  const Device* dev = devices_.find(e.dev);
  o.key("device").begin_object();
  char rdev[24];
  char* end = std::to_chars(rdev, rdev + 10, kernel_dev_major(e.dev)).ptr;
  *end++ = ':';
  end = std::to_chars(end, rdev + sizeof(rdev), kernel_dev_minor(e.dev)).ptr;
  o.field("rdev", std::string_view(rdev, static_cast<size_t>(end - rdev)));
  o.field("kind", dev_kind_name(e.device.kind));
  o.field("vendor", vendor_name(e.device.vendor));
  if (dev)
    o.field("path", std::string_view(dev->path));
  else
    o.key("path").null();
  if (e.device.gpu_index >= 0)
    o.field("gpu_index", e.device.gpu_index);
  else
    o.key("gpu_index").null();
  o.field("alias", static_cast<bool>(e.device.flags & GG_DEVF_ALIAS));
  if (dev && dev->alias()) o.field("alias_of", std::string_view(dev->alias_of));
  if (dev && !dev->pci.empty()) o.field("pci", std::string_view(dev->pci));
  o.key("uuid").null();
  o.end_object();

  // Re-decode in user space with what only user space knows (the RM class
  // of the target object); the kernel's own answer is kept beside it.
  gg_raw raw = e.raw;
  if (auto target = rm_object_class(e)) raw.target_class = *target;
  gg_decoded dec = decode(raw);
  o.key("request").begin_object();
  write_raw(o, raw);
  o.field("fd", e.fd);
  char ptr[24] = {'0', 'x'};
  end = std::to_chars(ptr + 2, ptr + sizeof(ptr), e.arg, 16).ptr;
  o.field("arg_ptr", std::string_view(ptr, static_cast<size_t>(end - ptr)));
  o.end_object();
  o.key("decoded");
  write_decoded(o, raw, dec);
  if (raw.target_class == 0 && std::memcmp(&dec, &e.dec, sizeof(dec)) != 0) {
    // The same bytes must decode the same everywhere; say so if not.
    o.key("kernel_decoded");
    write_decoded(o, e.raw, e.dec);
  }
  o.field("hook", hook_name(e.hook));
  o.field("mode", mode_name(e.mode));
  o.field("verdict", verdict_name(e.verdict));
  std::string_view cls = class_name(dec.cls), action = action_name(e.action);
  std::string reason = verdict_reason(e.verdict, e.mode, e.reason, dec.cls, e.action, e.grant_id, e.raw.capture_flags,
                                      "before the driver ran");
  if (e.rule && e.rule <= rule_names_.size()) reason += fmt::format(" (policy rule \"{}\")", rule_names_[e.rule - 1]);
  if (dec.flags & GG_DF_DRIVER_REFUSES) reason += "; an attempt: the driver refuses this command from user space";
  o.field("verdict_reason", std::string_view(reason));
  o.field("reason", reason_name(e.reason));
  o.key("rule").begin_object();
  o.field("source", std::string_view(policy_source_));
  o.field("class", cls);
  if (e.rule) {
    o.field("rule", e.rule);
    o.field("name", e.rule <= rule_names_.size() ? std::string_view(rule_names_[e.rule - 1]) : std::string_view("?"));
  }
  o.field("action", action);
  o.end_object();
  if (e.grant_id) {
    o.key("grant").begin_object();
    o.field("id", e.grant_id);
    o.end_object();
  } else {
    o.key("grant").null();
  }
  o.key("result").begin_object();
  if (x) {
    o.field("ret", static_cast<int64_t>(x->ret));
    if (x->ret < 0) {
      int err = static_cast<int>(-x->ret);
      const char* name = strerrorname_np(err);
      const char* desc = strerrordesc_np(err);
      o.key("error").begin_object();
      o.field("errno", static_cast<int64_t>(err));
      o.field("name", name ? name : "?");
      o.field("text", desc ? desc : "?");
      o.end_object();
    } else {
      o.key("error").null();
    }
    if (x->status_valid && x->ret == 0)
      o.field("nv_status", x->nv_status);
    else
      o.key("nv_status").null();
    o.field("duration_ns", static_cast<uint64_t>(x->hdr.boot_ns - e.hdr.boot_ns));
  } else {
    o.key("ret").null();
    o.field("note", "no exit seen: the call was still running, or its exit record was lost");
  }
  o.end_object();
  o.field("engine", GG_HOOK_IS_KMOD(e.hook) ? std::string_view("kmod") : std::string_view(engine_));
  if (seen) {
    seen->boot_ns = e.hdr.boot_ns;
    seen->cls = dec.cls;
    seen->verdict = verdict_name(e.verdict);
    seen->grant_id = e.grant_id;
    seen->pci = dev ? std::string_view(dev->pci) : std::string_view();
    seen->command = command_name(raw, dec);
    seen->path = dev ? std::string_view(dev->path) : std::string_view();
    seen->failed = x && (x->ret < 0 || (x->status_valid && x->nv_status != 0));
  }
  o.field("kernel_seq", static_cast<uint64_t>(e.hdr.seq));
  return text;
}

void Pipeline::on_enter(const gg_ioctl_enter& e) {
  track_kernel_seq(GG_HOOK_IS_KMOD(e.hook), e.hdr.seq);
  auto it = pending_.find(e.hdr.tid);
  if (it != pending_.end()) {
    // A new call on the same thread: the old one's exit was lost.
    counters_.exits_missing++;
    finish(slots_[it->second], nullptr);
    slots_[it->second] = e;
    return;
  }
  size_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
    slots_[slot] = e;
  } else {
    slot = slots_.size();
    slots_.push_back(e);
  }
  pending_.emplace(e.hdr.tid, slot);
}

void Pipeline::track_kernel_seq(bool kmod, uint64_t seq) {
  // BPF and the module number their records each on their own
  auto& src = kernel_seq_[kmod ? 1 : 0];
  if (!src.count || seq < src.first) src.first = seq;
  if (!src.count || seq > src.last) src.last = seq;
  src.count++;
  counters_.kernel_seq_gaps = kernel_seq_[0].missing() + kernel_seq_[1].missing();
}

namespace {

std::string_view write_call_name(unsigned call) {
  static constexpr const char* kCalls[] = {"unknown", "write", "pwrite64", "writev", "mmap", "kernel"};
  static_assert(std::size(kCalls) == GG_WC_COUNT);
  return call < std::size(kCalls) ? kCalls[call] : "?";
}

std::string_view knob_rule_name(unsigned rule) {
  static constexpr const char* kRules[] = {"none", "any-write", "number", "runtime-pm", "pci-config"};
  static_assert(std::size(kRules) == GG_KNOB_RULE_COUNT);
  return rule < std::size(kRules) ? kRules[rule] : "?";
}

}  // namespace

// A write to a GPU's knob: one record, decided before the kernel's store ran.
void Pipeline::on_knob(const gg_knob_event& k) {
  bool kmod = GG_HOOK_IS_KMOD(k.hook);
  track_kernel_seq(kmod, k.hdr.seq);
  bool map = k.op == GG_KOP_MMAP;
  auto rec = base(map ? "knob.mmap" : "knob.write", k.hdr.boot_ns);
  std::string exe_name(k.exe_name, strnlen(k.exe_name, GG_EXE_NAME_LEN));
  const auto& proc = proc_info(k.hdr.pid, exe_name, k.cgroup_id);
  nlohmann::ordered_json process{{"pid", k.hdr.pid},
                                 {"tid", k.hdr.tid},
                                 {"uid", k.uid},
                                 {"gid", k.gid},
                                 {"comm", std::string(k.comm, strnlen(k.comm, GG_COMM_LEN))}};
  if (!proc.exe.empty()) {
    process["exe"] = proc.exe;
  } else {
    process["exe"] = exe_name.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(exe_name);
    if (!exe_name.empty()) process["exe_is_basename"] = true;
  }
  process["cgroup_id"] = k.cgroup_id;
  process["cgroup"] = proc.cgroup.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(proc.cgroup);
  rec["process"] = std::move(process);

  // What the daemon knows of the knob and its GPU (the kernel sent the inode).
  const PciGpu* gpu = devices_.find_gpu(k.knob.gpu_dev);
  const Knob* knob = nullptr;
  for (const auto& g : devices_.gpus())
    for (const auto& kn : g.knobs)
      if (kn.ino == k.key.ino && kn.fs_magic == k.key.fs_magic && !knob) knob = &kn;
  rec["gpu"] = {
      {"pci", gpu ? nlohmann::ordered_json(gpu->address) : nlohmann::ordered_json(nullptr)},
      {"vendor", vendor_name(k.knob.vendor)},
      {"grant_dev", fmt::format("{}:{}", kernel_dev_major(k.knob.gpu_dev), kernel_dev_minor(k.knob.gpu_dev))}};
  nlohmann::ordered_json kj;
  bool devmem = k.knob.flags & GG_KNOBF_DEVMEM;
  if (devmem) {
    kj["name"] = "/dev/mem";
    kj["path"] = nullptr;  // any node of char 1:1
    kj["owner"] = "host";
  } else {
    kj["name"] = knob ? nlohmann::ordered_json(knob->name) : nlohmann::ordered_json(nullptr);
    kj["path"] = knob ? nlohmann::ordered_json(knob->path) : nlohmann::ordered_json(nullptr);
    kj["owner"] = knob ? nlohmann::ordered_json(knob->owner) : nlohmann::ordered_json(nullptr);
  }
  kj["ino"] = k.key.ino;
  kj["fs"] = devmem ? "devtmpfs" : k.key.fs_magic == GG_FS_PROC ? "procfs" : "sysfs";
  kj["rule"] = knob_rule_name(k.knob.rule);
  if (k.knob.flags & GG_KNOBF_SHARED) kj["shared"] = true;
  rec["knob"] = std::move(kj);

  nlohmann::ordered_json w;
  w["call"] = write_call_name(k.call);
  w["syscall_nr"] = k.syscall_nr;
  w["compat"] = static_cast<bool>(k.compat);
  bool known = k.call == GG_WC_WRITE || k.call == GG_WC_PWRITE || k.call == GG_WC_MMAP || k.call == GG_WC_KERNEL;
  w["offset"] = known ? nlohmann::ordered_json(k.offset) : nlohmann::ordered_json(nullptr);
  w["length"] = known ? nlohmann::ordered_json(k.length) : nlohmann::ordered_json(nullptr);
  if (map) {
    auto prot = nlohmann::ordered_json::array();
    if (k.prot & PROT_READ) prot.push_back("read");
    if (k.prot & PROT_WRITE) prot.push_back("write");
    if (k.prot & PROT_EXEC) prot.push_back("exec");
    w["prot"] = std::move(prot);
    if (k.knob.flags & GG_KNOBF_DEVMEM) {
      w["via"] = "/dev/mem";
      w["bar"] = k.bar ? nlohmann::ordered_json(k.bar - 1) : nlohmann::ordered_json(nullptr);
    }
    rec["map"] = std::move(w);
  } else {
    size_t n = std::min<size_t>(k.value_len, GG_KNOB_VALUE_MAX);
    std::string value(reinterpret_cast<const char*>(k.value), n);
    bool text = std::all_of(value.begin(), value.end(), [](char c) { return c == '\n' || (c >= 0x20 && c < 0x7f); });
    if (k.capture_flags & GG_CAP_ARG_FAULT) {
      w["value"] = nullptr;
      w["value_note"] = "the buffer could not be read without a fault (the class does not depend on it)";
    } else if (n && text) {
      w["value"] = value;
    } else {
      w["value"] = nullptr;
    }
    w["value_hex"] = to_hex(std::span<const uint8_t>(k.value, n));
    if (known && k.length > n) w["value_cut"] = true;
    rec["write"] = std::move(w);
  }

  nlohmann::ordered_json d;
  d["class"] = class_name(k.dec.cls);
  d["class_source"] = source_name(k.dec.cls_source);
  nlohmann::ordered_json params = nlohmann::ordered_json::object();
  if (k.dec.flags & GG_DF_KEYS_VALID) params["written"] = k.dec.key[0];
  d["params"] = std::move(params);
  auto flags = nlohmann::ordered_json::array();
  for (auto f : flag_names(k.dec.flags)) flags.push_back(std::string(f));
  d["flags"] = std::move(flags);
  rec["decoded"] = std::move(d);

  rec["hook"] = hook_name(k.hook);
  rec["mode"] = mode_name(k.mode);
  rec["verdict"] = verdict_name(k.verdict);
  // An undecided knob was never a read that failed: say which system call hid its length or offset.
  std::string reason =
      k.reason != GG_WHY_CAPTURE ? verdict_reason(k.verdict, k.mode, k.reason, k.dec.cls, k.action, k.grant_id, 0,
                                                  map ? "before the mapping was made" : "before the kernel's store ran")
      : map                      ? fmt::format(
                                       "system call {} mapped /dev/mem with an offset not in registers, so the gate cannot tell "
                                                            "which memory it maps; denied before the mapping was made (use mmap)",
                                       k.syscall_nr)
            : fmt::format(
                  "a {} call: its length and position are not in registers, so the gate cannot tell what it "
                  "writes; denied before the kernel's store ran (use write or pwrite)",
                  write_call_name(k.call));
  if (k.rule && k.rule <= rule_names_.size()) reason += fmt::format(" (policy rule \"{}\")", rule_names_[k.rule - 1]);
  rec["verdict_reason"] = reason;
  rec["reason"] = reason_name(k.reason);
  nlohmann::ordered_json rule{{"source", policy_source_}, {"class", class_name(k.dec.cls)}};
  if (k.rule) {
    rule["rule"] = k.rule;
    rule["name"] = k.rule <= rule_names_.size() ? rule_names_[k.rule - 1] : std::string("?");
  }
  rule["action"] = action_name(k.action);
  rec["rule"] = std::move(rule);
  rec["grant"] = k.grant_id ? nlohmann::ordered_json{{"id", k.grant_id}} : nlohmann::ordered_json(nullptr);
  rec["engine"] = kmod ? std::string_view("kmod") : std::string_view(engine_);
  rec["kernel_seq"] = k.hdr.seq;
  counters_.knob_writes++;
  emit(std::move(rec));
}

// The gate refused an operation on its own objects: one record each, at
// warning level on every sink, with who tried it.
void Pipeline::on_guard(const gg_guard_event& g) {
  auto rec = base("guard.refused", g.hdr.boot_ns);
  rec["op"] = guard_op_name(g.op);
  rec["object_id"] = g.object_id;
  if (g.bpf_cmd) rec["bpf_cmd"] = g.bpf_cmd;
  rec["process"] = {{"pid", g.hdr.pid},
                    {"tid", g.hdr.tid},
                    {"uid", g.uid},
                    {"comm", std::string(g.comm, strnlen(g.comm, GG_COMM_LEN))},
                    {"exe_name", std::string(g.exe_name, strnlen(g.exe_name, GG_EXE_NAME_LEN))}};
  rec["note"] = "refused: only gpugated may change or detach the gate";
  counters_.guard_refusals++;
  emit(std::move(rec));
}

void Pipeline::on_exit(const gg_ioctl_exit& x) {
  auto it = pending_.find(x.hdr.tid);
  if (it == pending_.end() || slots_[it->second].hdr.seq != x.enter_seq) {
    counters_.unmatched_exits++;
    return;
  }
  const gg_ioctl_enter& e = slots_[it->second];
  // Learn RM object classes from successful allocs, for BINAPI detection.
  if (e.dec.table == GG_TAB_NV_ESCAPE && e.dec.nr == 0x2B && x.ret == 0 && x.status_valid && x.nv_status == 0 &&
      e.dec.key[0] != 0) {
    if (rm_objects_.size() > 65536) rm_objects_.clear();
    rm_objects_[{uint64_t{e.hdr.pid} << 32 | e.dec.client, static_cast<uint32_t>(e.dec.key[0])}] = e.dec.command;
  }
  finish(e, &x);
  free_slots_.push_back(it->second);
  pending_.erase(it);
}

bool Pipeline::emit(nlohmann::ordered_json rec) {
  auto seq = ledger_.append(rec);
  if (!seq) {
    counters_.write_errors++;
    if (sink_) sink_(rec, "ledger write failed: " + seq.error().message);
    return false;
  }
  rec["seq"] = *seq;
  if (observer_) observer_(rec);
  if (sink_) sink_(rec, human_line(rec));
  return true;
}

uint64_t raw_fingerprint(const gg_raw& raw) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  };
  mix(reinterpret_cast<const uint8_t*>(&raw.request), sizeof raw.request);
  mix(raw.arg, std::min<size_t>(raw.arg_len, sizeof raw.arg));
  mix(raw.inner, std::min<size_t>(raw.inner_len, sizeof raw.inner));
  mix(raw.params, std::min<size_t>(raw.params_len, sizeof raw.params));
  return h;
}

size_t Pipeline::SummaryKeyHash::operator()(const SummaryKey& k) const noexcept {
  uint64_t a = uint64_t{k.pid} << 32 | k.dev, b = uint64_t{k.request} << 32 | k.command;
  return std::hash<uint64_t>()(a * 0x9e3779b97f4a7c15ull ^ b ^ (uint64_t{k.object} * 0xff51afd7ed558ccdull) ^
                               (uint64_t{k.cls} << 59));
}

void Pipeline::aggregate(const gg_ioctl_enter& e, const gg_ioctl_exit* x, unsigned level) {
  uint64_t now = e.hdr.boot_ns;
  if (summaries_due(now)) flush_summaries();  // the traffic's own clock ends an interval too
  count_ioctl(e);
  auto it = summary_index_.end();
  if (level == GG_REC_SUMMARY) {
    SummaryKey key{e.hdr.pid, e.dev, e.raw.request, e.dec.command, e.dec.object, e.dec.cls};
    it = summary_index_.find(key);
    if (it == summary_index_.end()) {
      if (summaries_.size() >= kMaxOpenSummaries) flush_summaries();  // bounded memory, nothing dropped
      it = summary_index_.emplace(key, summaries_.size()).first;
    }
  }
  if (!window_start_ns_) window_start_ns_ = now ? now : 1;
  if (level == GG_REC_COUNT) {
    counters_.counted++;
    counted_[e.dec.cls & (GG_CLASS_COUNT - 1)][e.device.vendor < GG_VENDOR_COUNT ? e.device.vendor : 0]++;
    if (!counted_first_ns_) counted_first_ns_ = now;
    counted_last_ns_ = std::max(counted_last_ns_, now);
    return;
  }
  if (it->second == summaries_.size()) {
    Summary fresh;
    fresh.first = e;
    fresh.first_ns = now;
    summaries_.push_back(std::move(fresh));
  }
  Summary& sum = summaries_[it->second];
  counters_.summarized++;
  sum.calls++;
  sum.first_ns = std::min(sum.first_ns, now);
  sum.last_ns = std::max(sum.last_ns, now);
  sum.raw_sum += raw_fingerprint(e.raw);
  uint64_t result = 3ull << 32;  // no exit seen
  if (x) {
    sum.duration_ns += x->hdr.boot_ns - e.hdr.boot_ns;
    if (x->ret < 0)
      result = 1ull << 32 | static_cast<uint32_t>(-x->ret);
    else if (x->status_valid && x->nv_status != 0)
      result = 2ull << 32 | x->nv_status;
    else
      result = 0;
  }
  auto r = std::find_if(sum.results.begin(), sum.results.end(), [&](const auto& kv) { return kv.first == result; });
  if (r != sum.results.end())
    r->second++;
  else if (sum.results.size() < Summary::kMaxResults)
    sum.results.emplace_back(result, 1);
  else
    sum.other_results++;
}

void Pipeline::write_summary(const Summary& sum) {
  const gg_ioctl_enter& e = sum.first;
  auto rec = base("ioctl.summary", sum.last_ns);
  rec["first_time"] = format_utc(static_cast<int64_t>(sum.first_ns) + wall_offset_at(sum.first_ns));
  rec["first_boottime_ns"] = sum.first_ns;
  rec["calls"] = sum.calls;
  std::string process;
  JsonOut o(process);
  write_process(o, e, false);  // the first call's thread says nothing of the others
  rec["process"] = nlohmann::ordered_json::parse(process);
  const Device* dev = devices_.find(e.dev);
  nlohmann::ordered_json device{{"rdev", fmt::format("{}:{}", kernel_dev_major(e.dev), kernel_dev_minor(e.dev))},
                                {"kind", dev_kind_name(e.device.kind)},
                                {"vendor", vendor_name(e.device.vendor)},
                                {"path", dev ? nlohmann::ordered_json(dev->path) : nlohmann::ordered_json()}};
  if (dev && !dev->pci.empty()) device["pci"] = dev->pci;
  rec["device"] = std::move(device);
  rec["decoded"] = {{"command", command_name(e.raw, e.dec)},
                    {"class", class_name(e.dec.cls)},
                    {"request", fmt::format("{:#010x}", e.raw.request)}};
  if (e.dec.vendor == GG_VENDOR_NVIDIA && e.dec.table != GG_TAB_NONE && e.dec.object)
    rec["decoded"]["object"] = fmt::format("{:#010x}", e.dec.object);  // the RM object: which GPU
  rec["level"] = "summary";
  rec["verdict"] = verdict_name(GG_VERDICT_ALLOW);
  nlohmann::ordered_json results = nlohmann::ordered_json::object();
  for (const auto& [kind_code, n] : sum.results) {
    uint32_t kind = static_cast<uint32_t>(kind_code >> 32), code = static_cast<uint32_t>(kind_code);
    std::string name;
    if (kind == 0) {
      name = "ok";
    } else if (kind == 1) {
      const char* en = strerrorname_np(static_cast<int>(code));
      name = en ? en : fmt::format("errno {}", code);
    } else if (kind == 2) {
      name = fmt::format("nv_status {:#x}", code);
    } else {
      name = "no exit seen";
    }
    results[name] = n;
  }
  if (sum.other_results) results["other"] = sum.other_results;
  rec["results"] = std::move(results);
  rec["duration_ns"] = sum.duration_ns;
  rec["raw_sum"] = fmt::format("{:016x}", sum.raw_sum);
  rec["engine"] = GG_HOOK_IS_KMOD(e.hook) ? std::string("kmod") : engine_;
  if (emit(std::move(rec))) counters_.summaries++;
}

void Pipeline::flush_summaries() {
  for (const auto& sum : summaries_) write_summary(sum);
  summaries_.clear();
  summary_index_.clear();
  bool any_counted = false;
  nlohmann::ordered_json counts = nlohmann::ordered_json::object();
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++)
    for (unsigned v = 0; v < GG_VENDOR_COUNT; v++)
      if (counted_[c][v]) {
        counts[std::string(class_name(c))][std::string(vendor_name(v))] = counted_[c][v];
        any_counted = true;
      }
  if (any_counted) {
    auto rec = base("ioctl.counts", counted_last_ns_);
    rec["first_time"] = format_utc(static_cast<int64_t>(counted_first_ns_) + wall_offset_at(counted_first_ns_));
    rec["first_boottime_ns"] = counted_first_ns_;
    rec["level"] = "count";
    rec["calls"] = std::move(counts);
    emit(std::move(rec));
  }
  counted_ = {};
  counted_first_ns_ = counted_last_ns_ = 0;
  window_start_ns_ = 0;
}

unsigned Pipeline::record_level(const gg_ioctl_enter& e) const {
  unsigned level = gg_record_level_of(record_levels_.data(), e.dec.cls, e.action, e.verdict, e.dec.flags);
  if (level == GG_REC_FULL) return level;
  // User space may know the control's object class, and decode a class
  // that must be recorded in full: that decoding decides too.
  auto target = rm_object_class(e);
  if (!target) return level;
  gg_raw raw = e.raw;
  raw.target_class = *target;
  gg_decoded dec = decode(raw);
  if (gg_record_level_of(record_levels_.data(), dec.cls, e.action, e.verdict, dec.flags) == GG_REC_FULL)
    return GG_REC_FULL;
  return level;
}

void Pipeline::finish(const gg_ioctl_enter& e, const gg_ioctl_exit* x) {
  if (unsigned level = record_level(e); level != GG_REC_FULL) {
    aggregate(e, x, level);
    return;
  }
  // Judged classes are rare in real traffic, but anyone may flood them.
  bool judged = e.dec.cls >= GG_CLASS_POWER_OFF;
  CommandSeen seen;
  bool tell = command_observer_ && judged;
  std::string members = build_record(e, x, tell ? &seen : nullptr);
  auto seq = ledger_.append_members(members);
  if (!seq) {
    counters_.write_errors++;
    if (sink_) sink_(nlohmann::ordered_json::object(), "ledger write failed: " + seq.error().message);
    return;
  }
  counters_.records++;
  count_ioctl(e);
  if (tell) {
    seen.seq = *seq;
    command_observer_(seen);
  }
  bool observe = observer_ && !command_observer_ && judged;
  if (!observe && !sink_) return;
  // Human lines are for people: rendering them costs a parse, so daemons
  // under heavy load run with -q and people read `gpugate tail`. One parse
  // serves the watcher and the line.
  auto rec = nlohmann::ordered_json::parse("{\"seq\":" + std::to_string(*seq) + "," + members + "}");
  if (observe) observer_(rec);
  if (sink_) sink_(rec, human_line(rec));
}

Result<void> Pipeline::flush() {
  // A step seen before this batch was read is recorded after it: the
  // batch's events mostly happened before the step, and the ledger keeps
  // the boot clock's order.
  for (auto& jump : pending_jumps_) write_event("clock.jump", std::move(jump));
  pending_jumps_.clear();
  return ledger_.flush();
}

const std::string& Pipeline::ledger_dir() const { return ledger_.path(); }

Result<nlohmann::ordered_json> Pipeline::prune(const ledger::PruneCut& cut) {
  if (auto f = flush(); !f) return f.error();
  return ledger_.prune(cut);
}

void Pipeline::flush_stale(uint64_t max_age_ns) {
  uint64_t now = boottime_ns();
  for (auto it = pending_.begin(); it != pending_.end();) {
    const gg_ioctl_enter& e = slots_[it->second];
    if (now - e.hdr.boot_ns > max_age_ns) {
      counters_.exits_missing++;
      finish(e, nullptr);
      free_slots_.push_back(it->second);
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
}

void Pipeline::on_kmod_config(const gg_kmod_config_event& c) {
  static constexpr const char* kOps[] = {"?",         "owner", "policy", "devices", "grant-add",
                                         "grant-del", "hold",  "hook",   "state",   "owner-gone"};
  std::string_view op = c.op < std::size(kOps) ? kOps[c.op] : "?";
  // The daemon's own changes are recorded as what they are (grant.installed, ...)
  if (c.hdr.pid == static_cast<uint32_t>(getpid()) && c.op != GG_KCFG_HOOK) return;
  auto rec = base("kmod.config", c.hdr.boot_ns);
  rec["op"] = op;
  rec["object"] = c.object;
  if (c.detail[0]) rec["detail"] = std::string(c.detail, strnlen(c.detail, sizeof(c.detail)));
  rec["process"] = {{"pid", c.hdr.pid},
                    {"tid", c.hdr.tid},
                    {"uid", c.uid},
                    {"comm", std::string(c.comm, strnlen(c.comm, GG_COMM_LEN))}};
  if (c.op == GG_KCFG_HOOK)
    rec["note"] = c.object == 1   ? "gpugate.ko attached to this driver: it decides its commands now"
                  : c.object == 2 ? "gpugate.ko refused this driver (a symbol missing or taken): it does not gate it"
                                  : "gpugate.ko detached from this driver (its module is going)";
  else
    rec["note"] = "gpugate.ko's tables were changed by a process other than this daemon";
  emit(std::move(rec));
}

void Pipeline::note_losses(std::string_view source, const EngineStats& stats) {
  auto& base_seen = lost_seen_[std::string(source)];
  for (unsigned cls = 0; cls < GG_CLASS_COUNT; cls++) {
    const auto& now = stats.per_class[cls];
    auto& seen = base_seen.per_class[cls];
    uint64_t lost = now.dropped - seen.dropped, lost_exits = now.exit_dropped - seen.exit_dropped;
    if (lost == 0 && lost_exits == 0) continue;
    nlohmann::ordered_json body;
    body["class"] = class_name(cls);
    body["lost_records"] = lost;
    body["lost_exit_records"] = lost_exits;
    body["lost_total"] = now.dropped;
    body["engine"] = source;
    body["reason"] = "ring buffer full: the reader fell behind";
    write_event("gap", body);
    counters_.gaps++;
    seen.dropped = now.dropped;
    seen.exit_dropped = now.exit_dropped;
  }
  if (stats.guard_dropped > base_seen.guard_dropped) {
    write_event("gap", {{"class", "guard"},
                        {"lost_records", stats.guard_dropped - base_seen.guard_dropped},
                        {"lost_total", stats.guard_dropped},
                        {"engine", source},
                        {"reason", "ring buffer full: self-protection refusals were counted but not recorded"}});
    counters_.gaps++;
    base_seen.guard_dropped = stats.guard_dropped;
  }
}

bool Pipeline::follow_wall_clock() {
  uint64_t boot = boottime_ns();
  return follow_wall_clock(boot, realtime_offset_ns());
}

bool Pipeline::follow_wall_clock(uint64_t boot_now, int64_t offset_now) {
  int64_t delta = offset_now - rt_offset_;
  if (delta > -1'000'000'000 && delta < 1'000'000'000) return false;  // slewing, not a step
  int64_t before = rt_offset_;
  constexpr size_t kKeptSteps = 64;
  if (past_offsets_.size() == kKeptSteps) past_offsets_.erase(past_offsets_.begin());
  past_offsets_.push_back({boot_now, before});
  rt_offset_ = offset_now;
  pending_jumps_.push_back({{"delta_ns", delta},
                            {"offset_before_ns", before},
                            {"offset_after_ns", offset_now},
                            {"seen_boottime_ns", boot_now},
                            {"note",
                             "the wall clock was stepped; records keep seq and boottime order; an event's "
                             "time uses the offset in force when it happened (up to seen_boottime_ns the "
                             "old one)"}});
  return true;
}

int64_t Pipeline::wall_offset_at(uint64_t boot_ns) const {
  for (const auto& past : past_offsets_)
    if (boot_ns <= past.boot_until) return past.offset;
  return rt_offset_;
}

void Pipeline::write_event(const std::string& type, nlohmann::ordered_json body) {
  auto rec = base(type, boottime_ns());
  for (auto& [k, v] : body.items()) rec[k] = std::move(v);
  emit(std::move(rec));
}

std::string human_line(const nlohmann::ordered_json& r) {
  // A person's line: the local time with its offset (the record keeps UTC).
  std::string time = r.contains("realtime_ns") && r["realtime_ns"].is_number_integer()
                         ? format_local_rfc3339(r["realtime_ns"].get<int64_t>(), 3)
                         : r.value("time", std::string());
  std::string type = r.value("type", std::string());
  if (type == "ioctl.summary" && r["process"].is_object() && r["device"].is_object() && r["decoded"].is_object() &&
      r["results"].is_object()) {
    // "... #12 ioctl.summary nvidia-ctl 195:255 pid 42 exporter: NV0000_... [query] x30 (ok 26, EINVAL 4) since
    // 11:59:01.000"
    const auto& d = r["device"];
    const auto& p = r["process"];
    std::string results;
    for (const auto& [k, v] : r["results"].items())
      results += fmt::format("{}{} {}", results.empty() ? "" : ", ", k, v.dump());
    std::string since = r.contains("first_boottime_ns") && r["first_boottime_ns"].is_number_unsigned() &&
                                r["realtime_ns"].is_number_integer() && r["boottime_ns"].is_number_unsigned()
                            ? format_local_rfc3339(r["realtime_ns"].get<int64_t>() -
                                                       static_cast<int64_t>(r["boottime_ns"].get<uint64_t>() -
                                                                            r["first_boottime_ns"].get<uint64_t>()),
                                                   3)
                            : r.value("first_time", std::string("?"));
    return fmt::format("{} #{} ioctl.summary {} {} pid {} {}: {} [{}] x{} ({}) since {}", time,
                       r.value("seq", uint64_t{0}), d.value("kind", std::string()), d.value("rdev", std::string()),
                       p.value("pid", 0u), p.value("comm", std::string()), r["decoded"].value("command", std::string()),
                       r["decoded"].value("class", std::string()), r.value("calls", uint64_t{0}), results, since);
  }
  if (type != "ioctl") {
    std::string extra;
    for (const auto& [k, v] : r.items()) {
      if (k == "seq" || k == "type" || k == "time" || k == "realtime_ns" || k == "boottime_ns" || k == "boot_id" ||
          k == "host_id" || k == "prev")
        continue;
      // Signed request texts and signatures stay in the ledger; a line shows their size.
      if ((k == "request" || k == "signatures") && (v.is_string() || v.is_array())) {
        extra += fmt::format(" {}=({} {})", k, v.is_string() ? v.get<std::string>().size() : v.size(),
                             v.is_string() ? "bytes" : "items");
        continue;
      }
      extra += fmt::format(" {}={}", k, v.is_string() ? v.get<std::string>() : v.dump());
    }
    return fmt::format("{} #{} {}{}", time, r.value("seq", uint64_t{0}), type, extra);
  }
  const auto& d = r["device"];
  const auto& p = r["process"];
  const auto& dec = r["decoded"];
  std::string dev = fmt::format("{} {}", d.value("kind", std::string()), d.value("rdev", std::string()));
  if (d.value("alias", false))
    dev += fmt::format(" (alias of {} at {})", d.value("alias_of", std::string()),
                       d["path"].is_string() ? d["path"].get<std::string>() : std::string("?"));
  std::string params;
  for (const auto& [k, v] : dec["params"].items()) params += fmt::format(" {}={}", k, v.dump());
  std::string via = dec["request"] != dec["command"] ? fmt::format(" via {}", dec["request"].get<std::string>()) : "";
  std::string flags;
  for (const auto& f : dec["flags"]) {
    // what was odd about the request, not what went right
    if (f == "keys-valid" || f == "object-known") continue;
    flags += fmt::format(" !{}", f.get<std::string>());
  }
  const auto& res = r["result"];
  std::string result;
  if (res["ret"].is_null()) {
    result = "no exit seen";
  } else if (res["error"].is_object()) {
    result = fmt::format("ret {} {}", res["ret"].dump(), res["error"]["name"].get<std::string>());
  } else {
    result = fmt::format("ret {}", res["ret"].dump());
    if (res["nv_status"].is_number()) result += fmt::format(" nv_status {:#x}", res["nv_status"].get<uint32_t>());
  }
  std::string verdict = r.value("verdict", std::string("allowed"));
  std::string decision = verdict == "denied" ? " DENIED" : verdict == "would-deny" ? " (would deny)" : "";
  return fmt::format(
      "{} #{} {} pid {} {}: {}{} [{}{}]{}{}{} -> {}", time, r.value("seq", uint64_t{0}), dev, p.value("pid", 0u),
      p.value("comm", std::string()), dec["command"].get<std::string>(), via, dec["class"].get<std::string>(),
      dec["class_source"] == "inferred" ? std::string(", inferred") : std::string(), params, flags, decision, result);
}

}  // namespace gpugate
