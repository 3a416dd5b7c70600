// gpugate: the operator's and investigator's command line. Thin: parsing and
// printing; the work is in libgpugate.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "control_cmd.hpp"
#include "gpugate/decode.hpp"
#include "gpugate/device.hpp"
#include "gpugate/doctor.hpp"
#include "gpugate/hex.hpp"
#include "gpugate/log_query.hpp"
#include "gpugate/log_reader.hpp"
#include "gpugate/paths.hpp"
#include "gpugate/pci.hpp"
#include "gpugate/pipeline.hpp"
#include "gpugate/policy.hpp"
#include "gpugate/request.hpp"
#include "gpugate/status.hpp"
#include "log_cmd.hpp"
#include "mmio_cmd.hpp"
#include "request_cmd.hpp"
#include "state_cmd.hpp"

using namespace gpugate;

namespace {

int cmd_devices(const std::vector<std::string>& aliases, bool json, bool knobs) {
  DeviceTable t = DeviceTable::discover();
  for (const auto& a : aliases) {
    if (auto r = t.add_alias(a); !r) {
      std::fprintf(stderr, "gpugate devices: %s\n", r.error().message.c_str());
      return 2;
    }
  }
  auto gpus = discover_pci_gpus(t);
  if (json) {
    nlohmann::ordered_json out{{"nodes", devices_json(t)}, {"gpus", pci_gpus_json(gpus)}};
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  if (t.empty()) {
    std::printf(
        "No GPU device nodes found (NVIDIA 195:*, nvidia-uvm, /dev/dri/*, /dev/kfd).\n"
        "Use --device PATH=VENDOR to treat another character device as one, e.g. --device /dev/full=nvidia\n");
  } else {
    std::printf("%-24s %-9s %-16s %-7s %-12s %-6s %s\n", "PATH", "RDEV", "KIND", "VENDOR", "DRIVER", "INDEX", "NOTE");
    for (const auto& d : t.devices())
      std::printf("%-24s %-9s %-16s %-7s %-12s %-6s %s\n", d.path.c_str(), d.rdev_string().c_str(),
                  std::string(dev_kind_name(d.info.kind)).c_str(), std::string(vendor_name(d.info.vendor)).c_str(),
                  d.driver.c_str(), d.info.gpu_index >= 0 ? std::to_string(d.info.gpu_index).c_str() : "-",
                  d.alias() ? fmt::format("alias of {}", d.alias_of).c_str() : d.pci.c_str());
  }
  std::printf("\n");
  if (gpus.empty()) {
    std::printf("No GPU on the PCI bus (display class 03, or an NVIDIA, AMD or Intel accelerator or NVSwitch).\n");
    return 0;
  }
  std::printf("%-13s %-7s %-9s %-11s %-9s %-13s %s\n", "PCI", "VENDOR", "ID", "KIND", "DRIVER", "BRIDGE",
              "UUID / NODES");
  for (const auto& g : gpus) {
    std::string nodes;
    for (const auto& n : g.nodes) nodes += (nodes.empty() ? "" : " ") + n;
    std::printf("%-13s %-7s %04x:%04x %-11s %-9s %-13s %s%s%s\n", g.address.c_str(),
                std::string(vendor_name(g.vendor)).c_str(), g.vendor_id, g.device_id, g.kind.c_str(),
                g.driver.empty() ? "-" : g.driver.c_str(), g.bridge.empty() ? "(root bus)" : g.bridge.c_str(),
                g.uuid.c_str(), g.uuid.empty() || nodes.empty() ? "" : " ", nodes.c_str());
    if (!knobs) {
      std::printf("%14s %zu knobs (--knobs lists them)\n", "", g.knobs.size());
      continue;
    }
    for (const auto& k : g.knobs)
      std::printf("%14s %-40s %-11s %-3s ino %-8llu %s\n", "", k.name.c_str(), std::string(class_name(k.cls)).c_str(),
                  k.writable ? "rw" : "ro", static_cast<unsigned long long>(k.ino), k.effect.c_str());
  }
  return 0;
}

int cmd_status_checked(const std::string& path, bool json);

int cmd_status(const std::string& path, bool json) {
  try {
    return cmd_status_checked(path, json);
  } catch (const nlohmann::json::exception& e) {
    std::fprintf(stderr, "gpugate status: %s is not a status file gpugated wrote (%s); restart gpugated\n",
                 path.c_str(), e.what());
    return 2;
  }
}

int cmd_status_checked(const std::string& path, bool json) {
  auto st = read_status(path);
  if (!st) {
    std::fprintf(stderr, "gpugate status: %s\n", st.error().message.c_str());
    return 3;
  }
  auto& s = *st;
  bool alive = s.value("state", "") == "running" && s.contains("pid") && kill(s["pid"].get<int>(), 0) == 0;
  if (json) {
    s["alive"] = alive;
    std::printf("%s\n", s.dump(2).c_str());
    return alive ? 0 : 3;
  }
  std::printf("gpugated   %s (pid %d, %s, up %.0f s)\n", alive ? "running" : "NOT RUNNING", s.value("pid", 0),
              s.value("version", "?").c_str(), s.value("uptime_s", 0.0));
  std::printf("engine     %s, mode %s%s\n", s.value("engine", "?").c_str(), s.value("mode", "?").c_str(),
              s.value("mode", "") == "observe" ? " (records; does not block)" : "");
  if (s.contains("pinned") && s["pinned"].is_string())
    std::printf("pinned     %s (the gate outlives the daemon; gpugated --unload ends it)\n",
                s["pinned"].get<std::string>().c_str());
  if (s.contains("control_socket") && s["control_socket"].is_string())
    std::printf("control    %s (gpugate request nonce|submit, grants, exec)\n",
                s["control_socket"].get<std::string>().c_str());
  for (const auto& h : s["hooks"])
    std::printf("hook       %-30s %s  %s\n", h["hook"].get<std::string>().c_str(),
                h["attached"].get<bool>()          ? "attached"
                : h.value("needed", true) == false ? "unneeded"
                                                   : "FAILED",
                h["detail"].get<std::string>().c_str());
  for (const auto& d : s["devices"])
    std::printf("device     %-22s %-8s %s%s\n", d["path"].get<std::string>().c_str(),
                d["rdev"].get<std::string>().c_str(), d["kind"].get<std::string>().c_str(),
                d.value("alias", false) ? fmt::format(" (alias of {})", d.value("alias_of", "")).c_str() : "");
  std::printf("ledger     %s (%llu records this run, next seq %llu)\n", s.value("ledger", "?").c_str(),
              static_cast<unsigned long long>(s.value("records", uint64_t{0})),
              static_cast<unsigned long long>(s.value("ledger_next_seq", uint64_t{0})));
  if (s.contains("ledger_budget") && s["ledger_budget"].is_object()) {
    const auto& b = s["ledger_budget"];
    auto mib = [&](const char* k) { return static_cast<double>(b.value(k, uint64_t{0})) / (1 << 20); };
    bool over = b.value("over", false);
    std::string reason = over && b.contains("reason") && b["reason"].is_string() ? b["reason"].get<std::string>() : "";
    std::printf("budget     %.1f of %.1f MiB, %s; %llu records pruned after shipping%s%s\n", mib("bytes"),
                mib("max_bytes"), over ? "OVER (every record kept)" : "within",
                static_cast<unsigned long long>(b.value("pruned_records", uint64_t{0})), over ? "\n           " : "",
                reason.c_str());
  }
  std::printf("kernel     %llu GPU ioctls seen, %llu records lost, %llu gap records\n",
              static_cast<unsigned long long>(s.value("seen", uint64_t{0})),
              static_cast<unsigned long long>(s.value("lost", uint64_t{0})),
              static_cast<unsigned long long>(s.value("gaps", uint64_t{0})));
  for (const auto& [cls, c] : s["per_class"].items())
    std::printf("  %-14s seen %-10llu lost %llu\n", cls.c_str(),
                static_cast<unsigned long long>(c.value("seen", uint64_t{0})),
                static_cast<unsigned long long>(c.value("dropped", uint64_t{0})) +
                    static_cast<unsigned long long>(c.value("exit_dropped", uint64_t{0})));
  return alive ? 0 : 3;
}

volatile sig_atomic_t g_stop = 0;

void print_line(const std::string& line, bool json, const std::string& path, uint64_t lineno) {
  if (line.empty()) return;
  if (json) {
    std::printf("%s\n", line.c_str());
    return;
  }
  auto j = nlohmann::ordered_json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    std::printf("%s:%llu: not a JSON record (%zu bytes)\n", path.c_str(), static_cast<unsigned long long>(lineno),
                line.size());
    return;
  }
  try {
    std::string text = human_line(j);  // leads with the local time and its offset
    std::printf("%s\n", text.c_str());
  } catch (const nlohmann::json::exception& e) {
    // A record with fields of the wrong shape: say where, keep going.
    std::printf("%s:%llu: not a gpugate record (%s)\n", path.c_str(), static_cast<unsigned long long>(lineno),
                e.what());
  }
}

// The files to tail: the segments of a ledger directory, or one file.
Result<std::vector<ledger::Segment>> tail_files(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) {
    // stat, not open: a FIFO or a device is refused without waiting on it.
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
      return make_error(
          fmt::format("cannot open {}: {}; is gpugated writing elsewhere (--ledger)?", path, std::strerror(errno)));
    if (!S_ISREG(st.st_mode))
      return make_error(
          fmt::format("{} is not a regular file (a FIFO, a device or a socket holds no records); pass "
                      "a ledger directory or one of its segments",
                      path));
    if (!std::ifstream(path))
      return make_error(
          fmt::format("cannot open {}: {}; is gpugated writing elsewhere (--ledger)?", path, std::strerror(errno)));
    ledger::Segment one;
    one.path = path;
    one.name = std::filesystem::path(path).filename().string();
    one.compressed = path.ends_with(ledger::kCompressedSuffix);
    return std::vector<ledger::Segment>{one};
  }
  return ledger::list_segments(path);
}

int cmd_tail(const std::string& path, size_t lines, bool follow, bool json) {
  auto files = tail_files(path);
  if (!files) {
    std::fprintf(stderr, "gpugate tail: %s\n", files.error().message.c_str());
    return 2;
  }
  // The last lines, from the last segment backwards (sealed ones may be compressed).
  struct Held {
    size_t file;
    uint64_t lineno;
    std::string line;
  };
  std::deque<Held> last;
  for (size_t i = files->size(); i-- > 0 && last.size() < lines;) {
    auto bytes = ledger::SegmentBytes::open((*files)[i]);
    if (!bytes) {
      std::fprintf(stderr, "gpugate tail: %s\n", bytes.error().message.c_str());
      return 2;
    }
    std::deque<Held> mine;
    ledger::split_lines((*files)[i], bytes->view(), [&](const ledger::Line& l) {
      mine.push_back({i, l.lineno, std::string(l.text)});
      if (mine.size() > lines) mine.pop_front();
      return true;
    });
    while (!mine.empty() && last.size() < lines) {
      last.push_front(std::move(mine.back()));
      mine.pop_back();
    }
  }
  for (const auto& h : last) print_line(h.line, json, (*files)[h.file].path, h.lineno);
  std::fflush(stdout);
  if (!follow) return 0;
  signal(SIGINT, [](int) { g_stop = 1; });
  signal(SIGTERM, [](int) { g_stop = 1; });
  std::string current = files->back().path;
  std::ifstream in(current);
  in.seekg(0, std::ios::end);
  uint64_t lineno = 0;
  {
    std::ifstream count(current);
    std::string l;
    while (std::getline(count, l)) lineno++;
  }
  std::string partial;
  while (!g_stop) {
    char c;
    bool got = false;
    while (in.get(c)) {
      got = true;
      if (c == '\n') {
        print_line(partial, json, current, ++lineno);
        partial.clear();
      } else {
        partial.push_back(c);
      }
    }
    if (got) std::fflush(stdout);
    in.clear();
    // A full segment is closed and the next one opened: follow it.
    if (!got && partial.empty()) {
      auto now = tail_files(path);
      if (now && now->back().path != current) {
        current = now->back().path;
        in = std::ifstream(current);
        lineno = 0;
        continue;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return 0;
}

int cmd_policy_check(const std::string& path) {
  auto p = load_policy(path);
  if (!p) {
    std::fprintf(stderr, "%s\n", p.error().message.c_str());
    return 1;
  }
  // The signers file is part of the policy: a line gpugated cannot use is an
  // error here, as it is when gpugated starts.
  if (auto signers = check_allowed_signers(p->signers); !signers) {
    std::fprintf(stderr, "%s\n", signers.error().message.c_str());
    return 1;
  }
  std::string gated;
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++)
    if (p->table.action[c] == GG_ACT_REQUIRE_SIGNATURE || p->table.action[c] == GG_ACT_DENY)
      gated += fmt::format("{}{} ({})", gated.empty() ? "" : ", ", class_name(c), action_name(p->table.action[c]));
  std::printf("%s: ok; mode %s; gated: %s\n", path.c_str(),
              p->mode_name.empty() ? "(from --mode)" : p->mode_name.c_str(), gated.empty() ? "nothing" : gated.c_str());
  std::printf(
      "signers: %s; a grant at most %s and %lld uses\n",
      p->signers.allowed_signers.empty() ? "none (signed requests are refused)" : p->signers.allowed_signers.c_str(),
      auth::format_duration(p->signers.max_grant_window).c_str(), static_cast<long long>(p->signers.max_grant_uses));
  return 0;
}

int cmd_policy_show(const std::string& path) {
  if (path.empty()) {
    auto p = builtin_policy(GG_MODE_ENFORCE);
    p.mode_name = "enforce";
    std::printf("%s", policy_to_toml(p).c_str());
    return 0;
  }
  auto p = load_policy(path);
  if (!p) {
    std::fprintf(stderr, "%s\n", p.error().message.c_str());
    return 1;
  }
  std::printf("%s", policy_to_toml(*p).c_str());
  return 0;
}

struct DecodeArgs {
  std::string ioctl, hex, inner_hex, params_hex, device = "nvidiactl";
  uint32_t target_class = 0;
  bool json = false;
};

int cmd_decode(const DecodeArgs& a) {
  auto req = parse_number(a.ioctl, UINT32_MAX);
  if (!req) {
    std::fprintf(stderr, "gpugate decode: --ioctl: %s\n", req.error().message.c_str());
    return 2;
  }
  std::vector<uint8_t> arg, inner, params;
  for (auto [text, dst, name] : {std::tuple{&a.hex, &arg, "--hex"},
                                 {&a.inner_hex, &inner, "--inner-hex"},
                                 {&a.params_hex, &params, "--params-hex"}}) {
    if (text->empty()) continue;
    auto b = parse_hex(*text);
    if (!b) {
      std::fprintf(stderr, "gpugate decode: %s: %s\n", name, b.error().message.c_str());
      return 2;
    }
    *dst = std::move(*b);
  }
  unsigned kind = GG_DEV_NVIDIA_CTL, drm = GG_DRM_GENERIC;
  const std::string& dv = a.device;
  if (dv == "nvidiactl" || dv == "nvidia" || dv == "ctl") {
    kind = GG_DEV_NVIDIA_CTL;
  } else if (dv.starts_with("nvidia") && dv.size() > 6 && std::isdigit(static_cast<unsigned char>(dv[6]))) {
    kind = GG_DEV_NVIDIA_GPU;
  } else if (dv == "nvidia-uvm" || dv == "uvm") {
    kind = GG_DEV_NVIDIA_UVM;
  } else if (dv == "nvidia-modeset") {
    kind = GG_DEV_NVIDIA_MODESET;
  } else if (dv == "dri" || dv == "drm") {
    kind = GG_DEV_DRM;
  } else if (auto driver = drm_driver_from_name(dv)) {
    kind = GG_DEV_DRM;
    drm = *driver;
  } else if (dv == "kfd") {
    kind = GG_DEV_KFD;
  } else {
    std::fprintf(stderr,
                 "gpugate decode: --device %s: unknown node kind; use nvidiactl, nvidiaN, nvidia-uvm, "
                 "nvidia-modeset, dri, amdgpu, i915, xe or kfd\n",
                 dv.c_str());
    return 2;
  }
  gg_raw raw = capture({kind, drm, static_cast<uint32_t>(*req), arg, inner, params, a.target_class, true});
  gg_decoded d = decode(raw);
  if (a.json) {
    nlohmann::ordered_json j;
    j["request"] = raw_json(raw);
    j["decoded"] = decoded_json(raw, d);
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("request    %#010x on %s: %s%s\n", raw.request, std::string(dev_kind_name(kind)).c_str(),
              request_name(raw, d).c_str(), (d.flags & GG_DF_XFER) ? " (unwrapped)" : "");
  std::printf("command    %s (%#010x)\n", command_name(raw, d).c_str(), d.command);
  std::printf("class      %s (%s)%s\n", std::string(class_name(d.cls)).c_str(),
              std::string(source_name(d.cls_source)).c_str(),
              class_gated_by_default(d.cls) ? ": gated by the default policy (signature required)" : "");
  std::printf("privilege  %s (as the driver would judge it)\n", std::string(priv_name(d.priv)).c_str());
  auto kp = key_params(d);
  if (!kp.empty()) {
    std::string s;
    for (const auto& [k, v] : kp) s += fmt::format("{}={:#x} ", k, v);
    std::printf("params     %s\n", s.c_str());
  }
  if (d.client || d.object) std::printf("handles    client %#010x object %#010x\n", d.client, d.object);
  auto flags = flag_names(d.flags);
  if (!flags.empty()) std::printf("flags      %s\n", fmt::format("{}", fmt::join(flags, ", ")).c_str());
  if ((d.flags & GG_DF_XFER) && (d.flags & GG_DF_INNER_FAULT))
    std::printf("hint       pass the inner struct's bytes with --inner-hex to decode the tunnelled request\n");
  if (d.flags & GG_DF_PARAMS_FAULT)
    std::printf("hint       pass the params block's bytes with --params-hex to see the parameters\n");
  if (d.flags & (GG_DF_ARG_FAULT | GG_DF_ARG_SHORT))
    std::printf("hint       --hex is shorter than the %u bytes the request word declares\n",
                (raw.request >> 16) & 0x3fff);
  return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{
      "gpugate - inspect GPU control commands and the gpugate ledger.\n\n"
      "Subcommands:\n"
      "  devices   GPU device nodes on this machine (and --device aliases)\n"
      "  status    what the running gpugated attached, saw and lost\n"
      "  tail      the ledger's last records, and -f to follow it\n"
      "  log       verify, checkpoint, proof, show, stats, export, replay, timeline (gpugate log --help)\n"
      "  decode    what is this ioctl? decode a request word and its bytes offline\n"
      "  request   signed authorizations: new, sign, verify (see gpugate request --help)\n"
      "  doctor    what this host supports for gpugate, and how to fix what is missing\n"
      "  state     each GPU's power, clocks, throttle reasons, modes and PCI state, and what changed\n"
      "  mmio      MMIO evidence: capture a driver's register writes with mmiotrace, classify a saved trace\n\n"
      "Exit status: 0 success, 2 bad arguments or unreadable input, 3 daemon not running (status).",
      "gpugate"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "0.1.0");

  std::vector<std::string> aliases;
  bool json = false;
  bool knobs = false;
  auto* devices = app.add_subcommand(
      "devices",
      "List GPU device nodes (NVIDIA, DRM, KFD, aliases) and the GPUs on the PCI bus: address, vendor and device "
      "ids, driver, UUID, upstream bridge, nodes, and the sysfs/procfs knobs that power off, reset, throttle or map "
      "them");
  devices->add_option("--device", aliases, "PATH=VENDOR alias to include (repeatable)");
  devices->add_flag("--json", json, "JSON: {\"nodes\": [...], \"gpus\": [...]}");
  devices->add_flag("--knobs", knobs, "List every GPU's knobs: name, class, mode, inode, effect");

  std::string status_file = paths::kStatus;
  auto* status = app.add_subcommand("status", "Show the daemon's hooks, devices and counters");
  status->add_option("--status-file", status_file, "Status file written by gpugated")->capture_default_str();
  status->add_flag("--json", json, "The status document as JSON");

  std::string ledger = paths::kLedger;
  size_t lines = 10;
  bool follow = false;
  auto* tail = app.add_subcommand("tail", "Print the ledger's last records; -f follows new ones");
  tail->add_option("--ledger", ledger, "Ledger directory (or one segment file)")->capture_default_str();
  tail->add_option("-n,--lines", lines, "How many records to print first")->capture_default_str();
  tail->add_flag("-f,--follow", follow, "Keep printing records as they are appended (Ctrl-C to stop)");
  tail->add_flag("--json", json, "Print records as JSON lines, byte for byte as in the ledger");

  DecodeArgs da;
  auto* decode_cmd = app.add_subcommand("decode", "Decode an ioctl request and its argument bytes");
  decode_cmd->add_option("--ioctl", da.ioctl, "Request word, e.g. 0xC020462A")->required();
  decode_cmd->add_option("--hex", da.hex, "Bytes of the struct the argument points at");
  decode_cmd->add_option("--inner-hex", da.inner_hex, "NVIDIA XFER: bytes of the tunnelled struct");
  decode_cmd->add_option("--params-hex", da.params_hex, "NVIDIA RM control/alloc: bytes of the params block");
  decode_cmd
      ->add_option("--device", da.device,
                   "Node kind: nvidiactl (default), nvidiaN, nvidia-uvm, nvidia-modeset, dri, amdgpu, i915, "
                   "xe, kfd")
      ->capture_default_str();
  decode_cmd->add_option("--target-class", da.target_class, "RM class of the control's target object, if known");
  decode_cmd->add_flag("--json", da.json, "JSON output");

  std::string policy_path;
  auto* policy = app.add_subcommand("policy", "Check or show a policy file");
  policy->require_subcommand(1);
  auto* policy_check = policy->add_subcommand("check", "Validate FILE; exit 1 with file:line and the fix if not");
  policy_check->add_option("FILE", policy_path, "Policy file (TOML)")->required();
  auto* policy_show = policy->add_subcommand("show", "Print FILE, or the built-in policy, with every class");
  policy_show->add_option("FILE", policy_path, "Policy file (TOML); none: the built-in policy");

  gpugate::cli::RequestCommands request_cmds(app);
  gpugate::cli::ControlCommands control_cmds(app, request_cmds.request());
  auto log_cmd = gpugate::cli::add_log_command(app);
  auto mmio_cmd = gpugate::cli::add_mmio_command(app);
  auto state_cmd = gpugate::cli::add_state_command(app);
  gpugate::doctor::Options doctor_options;
  auto* doctor = app.add_subcommand(
      "doctor",
      "Check what this host supports for gpugate, one line per check with its fix: bpf in the kernel's LSM list, "
      "BTF, lockdown, bpffs, gpugate.ko built for the running kernel and loaded, the driver functions it hooks, "
      "/dev/mem's reach (IO_STRICT_DEVMEM), the control group, cgroup v2, clock sync. Reads only; exit 1 if a "
      "check fails");
  doctor->add_flag("--json", json, "{\"ok\": BOOL, \"checks\": [{check, status, detail, fix}]}");
  doctor->add_option("--control-group", doctor_options.control_group, "The group gpugated is given")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; a usage error exits 2, as every other
    // "bad arguments" of gpugate does (CLI11's own codes are over 100).
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (auto rc = state_cmd()) return *rc;
  if (*doctor) {
    auto checks = gpugate::doctor::run_checks({}, doctor_options);
    if (json)
      std::printf("%s\n", gpugate::doctor::checks_json(checks).dump().c_str());
    else
      std::printf("%s", gpugate::doctor::checks_text(checks).c_str());
    return gpugate::doctor::exit_status(checks);
  }
  if (auto rc = log_cmd()) return *rc;
  if (auto rc = mmio_cmd()) return *rc;
  if (auto rc = request_cmds.run()) return *rc;
  if (auto rc = control_cmds.run()) return *rc;
  // Exceptions (malformed files the subcommands did not catch) stop at main.
  if (*policy_check) return cmd_policy_check(policy_path);
  if (*policy_show) return cmd_policy_show(policy_path);
  if (*devices) return cmd_devices(aliases, json, knobs);
  if (*status) return cmd_status(status_file, json);
  if (*tail) return cmd_tail(ledger, lines, follow, json);
  if (*decode_cmd) return cmd_decode(da);
  return 2;
}

int main(int argc, char** argv) {
  try {
    return run_cli(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpugate: %s\n", e.what());
    return 2;
  }
}
