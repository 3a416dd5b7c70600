// gpugate doctor's checks. Each reads the kernel's own files (no BPF
// program is loaded, nothing is changed) and names the fix; the facts behind
// them: ../shared/reference/platform.md and kmod-hooks.md.
#include "gpugate/doctor.hpp"

#include <grp.h>
#include <sys/timex.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace gpugate::doctor {
namespace {

namespace fs = std::filesystem;

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// "lsm=a,b" of the kernel command line, or nullopt.
std::optional<std::string> cmdline_value(const std::string& cmdline, const std::string& key) {
  for (const auto& word : split(cmdline, ' '))
    if (word.starts_with(key + "=")) return word.substr(key.size() + 1);
  return std::nullopt;
}

// CONFIG_X of the running kernel's config (/boot/config-REL): "y", "m", a
// value, "n" when "is not set", nullopt when the config is not there.
class KernelConfig {
 public:
  // path, or else the gzip'ed copy the kernel itself serves (/proc/config.gz).
  KernelConfig(const std::string& path, const std::string& gz_path) {
    std::string text;
    if (auto t = read_text(path)) {
      text = *t;
    } else if (gzFile gz = gzopen(gz_path.c_str(), "rb")) {
      char buf[65536];
      int n = 0;
      while ((n = gzread(gz, buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
      gzclose(gz);
    }
    found_ = !text.empty();
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with("# CONFIG_") && line.ends_with(" is not set"))
        values_[line.substr(2, line.find(' ', 2) - 2)] = "n";
      auto eq = line.find('=');
      if (line.starts_with("CONFIG_") && eq != std::string::npos) values_[line.substr(0, eq)] = line.substr(eq + 1);
    }
  }
  [[nodiscard]] bool found() const { return found_; }
  [[nodiscard]] std::optional<std::string> get(const std::string& key) const {
    if (!found_) return std::nullopt;
    auto it = values_.find(key);
    return it == values_.end() ? std::optional<std::string>("n") : it->second;
  }

 private:
  bool found_ = false;
  std::map<std::string, std::string> values_;
};

// The filesystems mounted, as (mount point, type).
std::vector<std::pair<std::string, std::string>> mounts(const std::string& proc) {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream in(proc + "/mounts");
  std::string dev, point, type, rest;
  while (in >> dev >> point >> type && std::getline(in, rest)) out.emplace_back(point, type);
  return out;
}

bool mounted(const std::vector<std::pair<std::string, std::string>>& m, const std::string& point,
             const std::string& type) {
  return std::any_of(m.begin(), m.end(), [&](const auto& e) { return e.first == point && e.second == type; });
}

// Whether /proc/kallsyms (or a file in its format) names each symbol.
std::vector<std::string> missing_symbols(const std::string& kallsyms, std::vector<std::string> wanted) {
  std::ifstream in(kallsyms);
  std::string addr, type, name, rest;
  for (std::string line; std::getline(in, line) && !wanted.empty();) {
    std::istringstream ls(line);
    if (!(ls >> addr >> type >> name)) continue;
    std::erase(wanted, name);
  }
  return wanted;
}

Check ok(std::string name, std::string detail) { return {std::move(name), "ok", std::move(detail), ""}; }
Check warn(std::string name, std::string detail, std::string fix) {
  return {std::move(name), "warn", std::move(detail), std::move(fix)};
}
Check fail(std::string name, std::string detail, std::string fix) {
  return {std::move(name), "fail", std::move(detail), std::move(fix)};
}

std::string kernel_release(const Roots& r) {
  if (!r.release.empty()) return r.release;
  utsname u{};
  return ::uname(&u) == 0 ? u.release : "";
}

Check check_lsm(const Roots& r, const KernelConfig& config, const std::string& cmdline) {
  std::string source = "/sys/kernel/security/lsm";
  auto list = read_text(r.sys + "/kernel/security/lsm");
  if (!list) {
    source = "lsm= on the kernel command line";
    list = cmdline_value(cmdline, "lsm");
  }
  const char* mount_fix = "mount -t securityfs securityfs /sys/kernel/security, then run gpugate doctor again";
  if (config.get("CONFIG_BPF_LSM") == std::optional<std::string>("n"))
    return fail("lsm", "this kernel is built without CONFIG_BPF_LSM: the BPF gate cannot load",
                "use a kernel with CONFIG_BPF_LSM=y (Debian's have it), or gate with gpugate.ko alone (--engine kmod)");
  if (!list) {
    // The build's default list is a guess: the boot may have changed it.
    auto c = config.get("CONFIG_LSM");
    if (!c)
      return warn("lsm", "cannot tell which LSMs run: securityfs is not mounted and the kernel's config is not found",
                  mount_fix);
    std::string built = c->size() >= 2 && c->front() == '"' ? c->substr(1, c->size() - 2) : *c;
    return warn("lsm",
                fmt::format("securityfs is not mounted: the kernel's built-in list is {} ({} bpf), but whether the "
                            "BPF LSM runs is only known from securityfs or gpugated's self-test",
                            built, contains(split(built, ','), "bpf") ? "with" : "without"),
                mount_fix);
  }
  auto lsms = split(*list, ',');
  if (!contains(lsms, "bpf"))
    return fail("lsm",
                fmt::format("bpf is not in the kernel's LSM list ({}: {}): the BPF gate cannot deny, gpugated only "
                            "observes where gpugate.ko does not gate",
                            source, *list),
                fmt::format("add bpf to lsm= on the kernel command line: lsm={},bpf (GRUB_CMDLINE_LINUX in "
                            "/etc/default/grub, update-grub, reboot), or load gpugate.ko",
                            *list));
  return ok("lsm", fmt::format("bpf is in the kernel's LSM list ({})", *list));
}

Check check_btf(const Roots& r) {
  if (fs::exists(r.sys + "/kernel/btf/vmlinux")) return ok("btf", "the kernel's BTF is at /sys/kernel/btf/vmlinux");
  return fail("btf", "no /sys/kernel/btf/vmlinux: gpugate's CO-RE BPF programs cannot be relocated here",
              "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's are), or gate with gpugate.ko alone "
              "(--engine kmod)");
}

Check check_lockdown(const Roots& r, const KernelConfig& config, const std::string& cmdline) {
  auto text = read_text(r.sys + "/kernel/security/lockdown");
  if (!text) {
    if (auto mode = cmdline_value(cmdline, "lockdown"); mode && *mode != "none")
      text = "[" + *mode + "]";  // set at boot: as the LSM would show it
    else if (config.get("CONFIG_SECURITY_LOCKDOWN_LSM") == std::optional<std::string>("n"))
      return ok("lockdown", "this kernel has no lockdown LSM");
    else if (!fs::exists(r.sys + "/kernel/security/lsm"))
      return warn("lockdown", "cannot read the lockdown mode: securityfs is not mounted",
                  "mount -t securityfs securityfs /sys/kernel/security, then run gpugate doctor again");
    else
      return ok("lockdown", "the lockdown LSM is not active");
  }
  if (text->find("[confidentiality]") != std::string::npos)
    return fail("lockdown",
                "lockdown=confidentiality: BPF may not read kernel memory, so the BPF observer and gate cannot "
                "find a file's device",
                "boot with lockdown=integrity (or none), or gate with gpugate.ko alone (--engine kmod), signed");
  if (text->find("[integrity]") != std::string::npos)
    return warn("lockdown",
                "lockdown=integrity: only signed modules load, so gpugate.ko must be signed with a key the kernel "
                "trusts",
                "let DKMS sign gpugate.ko with its MOK and enrol the key (mokutil --import "
                "/var/lib/dkms/mok.pub, reboot)");
  return ok("lockdown", fmt::format("lockdown: {}", *text));
}

Check check_bpffs(const std::vector<std::pair<std::string, std::string>>& m) {
  if (mounted(m, "/sys/fs/bpf", "bpf")) return ok("bpffs", "bpffs at /sys/fs/bpf: the gate can be pinned");
  return warn("bpffs", "no bpffs at /sys/fs/bpf: gpugated mounts it, or runs unpinned (--no-pin)",
              "mount -t bpf bpf /sys/fs/bpf (systemd does it at boot)");
}

Check check_kmod_built(const Roots& r, const std::string& release, const KernelConfig& config,
                       const std::string& cmdline) {
  if (config.get("CONFIG_MODULES") == std::optional<std::string>("n") || contains(split(cmdline, ' '), "nomodule"))
    return warn("kmod-built",
                "this kernel loads no modules (CONFIG_MODULES=n or nomodule): gpugate.ko cannot run "
                "here; the BPF gate decides alone",
                "boot a kernel that loads modules to add the driver-level gate");
  for (const char* sub : {"updates/dkms", "extra", "updates", "kernel/extra"})
    for (const char* ext : {".ko", ".ko.xz", ".ko.zst", ".ko.gz"}) {
      std::string p = fmt::format("{}/{}/{}/gpugate{}", r.lib_modules, release, sub, ext);
      if (fs::exists(p)) return ok("kmod-built", fmt::format("gpugate.ko is built for {}: {}", release, p));
    }
  return warn("kmod-built", fmt::format("gpugate.ko is not built for the running kernel {}", release),
              fmt::format("dkms autoinstall -k {} (package gpugate-dkms; needs linux-headers-{})", release, release));
}

Check check_kmod_loaded(const Roots& r, const Options& o) {
  bool loaded = fs::exists(r.sys + "/module/gpugate");
  bool node = fs::exists(o.kmod_device);
  if (loaded && node) return ok("kmod-loaded", fmt::format("gpugate.ko is loaded ({})", o.kmod_device));
  if (loaded)
    return warn("kmod-loaded", fmt::format("gpugate.ko is loaded but {} is missing", o.kmod_device),
                "udevadm trigger --subsystem-match=misc, or rmmod gpugate && modprobe gpugate");
  return warn("kmod-loaded",
              "gpugate.ko is not loaded: no driver-level gate (on the driver's copy); the BPF gate decides alone",
              "modprobe gpugate (after kmod-built is ok), and gpugated --kmod auto takes it");
}

// The drivers' functions gpugate.ko hooks (kmod/nvidia.c, drm.c, kfd.c),
// for each driver that is loaded.
Check check_driver_symbols(const Roots& r) {
  struct Family {
    const char* module;
    std::vector<std::string> symbols;
  };
  const Family families[] = {
      {"nvidia", {"nvidia_unlocked_ioctl", "rm_ioctl", "os_memcpy_from_user"}},
      {"drm", {"drm_ioctl", "drm_compat_ioctl", "drm_ioctl_kernel"}},
      {"amdgpu", {"kfd_ioctl", "amdkfd_ioctls"}},
  };
  std::vector<std::string> present, problems;
  for (const auto& f : families) {
    if (!fs::exists(r.sys + "/module/" + f.module)) continue;
    present.emplace_back(f.module);
    auto missing = missing_symbols(r.proc + "/kallsyms", f.symbols);
    if (!missing.empty()) problems.push_back(fmt::format("{} lacks {}", f.module, fmt::join(missing, ", ")));
  }
  if (present.empty()) return ok("driver-symbols", "no NVIDIA, DRM or amdgpu driver loaded: nothing to hook yet");
  if (!problems.empty())
    return fail("driver-symbols",
                fmt::format("{}: gpugate.ko cannot gate that driver on its copy; the BPF gate still decides its "
                            "ioctls before the copy",
                            fmt::join(problems, "; ")),
                "a driver build that has these functions (docs/kernel-module.md lists them with their sources); "
                "run as root, since /proc/kallsyms hides names from others under kptr_restrict");
  return ok("driver-symbols",
            fmt::format("every function gpugate.ko hooks is in the kernel ({})", fmt::join(present, ", ")));
}

Check check_devmem(const KernelConfig& config, const std::string& cmdline) {
  if (cmdline_value(cmdline, "iomem") == std::optional<std::string>("strict"))
    return ok("devmem", "iomem=strict: /dev/mem cannot reach a BAR a driver claimed");
  auto io = config.get("CONFIG_IO_STRICT_DEVMEM");
  if (!io)
    return warn("devmem", "the kernel's config is not found: cannot tell whether /dev/mem reaches a GPU's BARs",
                "install the running kernel's config in /boot (Debian's linux-image packages have it)");
  if (*io == "y") return ok("devmem", "CONFIG_IO_STRICT_DEVMEM=y: /dev/mem cannot reach a BAR a driver claimed");
  return warn("devmem",
              "/dev/mem reaches a GPU's BARs while its driver owns them (no IO_STRICT_DEVMEM): gpugate gates its "
              "mappings, not pread/pwrite of /dev/mem (docs/paths.md)",
              "boot with iomem=strict");
}

Check check_control_group(const Roots& r, const Options& o) {
  std::ifstream in(r.etc + "/group");
  for (std::string line; std::getline(in, line);)
    if (line.starts_with(o.control_group + ":"))
      return ok("control-group",
                fmt::format("group {} exists: its members may use the control socket", o.control_group));
  return warn("control-group",
              fmt::format("no group {}: only root may ask gpugated for nonces and submit requests", o.control_group),
              fmt::format("groupadd --system {} and add the operators (gpugated --control-group {})", o.control_group,
                          o.control_group));
}

Check check_cgroup2(const std::vector<std::pair<std::string, std::string>>& m) {
  if (mounted(m, "/sys/fs/cgroup", "cgroup2"))
    return ok("cgroup2", "cgroup v2 at /sys/fs/cgroup: grants can be scoped to a cgroup or a unit");
  return fail("cgroup2",
              "no cgroup v2 at /sys/fs/cgroup: grants scoped to a cgroup, a unit or gpugate exec cannot "
              "be used",
              "boot with systemd.unified_cgroup_hierarchy=1 (Debian 12's default)");
}

Check check_clock(const Roots& r) {
  bool synced = false;
  if (r.clock_synced) {
    synced = *r.clock_synced;
  } else {
    timex tx{};
    int state = ::adjtimex(&tx);
    synced = state != TIME_ERROR && !(tx.status & STA_UNSYNC);
  }
  if (synced) return ok("clock", "the system clock is synchronized");
  return warn("clock",
              "the system clock is not synchronized: record times and grant windows (signed in wall-clock time) "
              "drift from the operators'",
              "enable time synchronization: systemctl enable --now systemd-timesyncd (or chrony)");
}

}  // namespace

std::vector<Check> run_checks(const Roots& r, const Options& o) {
  std::string release = kernel_release(r);
  KernelConfig config(fmt::format("{}/config-{}", r.boot, release), r.proc + "/config.gz");
  std::string cmdline = read_text(r.proc + "/cmdline").value_or("");
  auto m = mounts(r.proc);
  std::vector<Check> checks;
  bool root = r.root ? *r.root : ::geteuid() == 0;
  checks.push_back(root ? ok("root", "running as root: every check reads what it needs")
                        : warn("root", "not root: /proc/kallsyms and securityfs may hide what the checks need",
                               "run gpugate doctor as root"));
  checks.push_back(check_lsm(r, config, cmdline));
  checks.push_back(check_btf(r));
  checks.push_back(check_lockdown(r, config, cmdline));
  checks.push_back(check_bpffs(m));
  checks.push_back(check_kmod_built(r, release, config, cmdline));
  checks.push_back(check_kmod_loaded(r, o));
  checks.push_back(check_driver_symbols(r));
  checks.push_back(check_devmem(config, cmdline));
  checks.push_back(check_control_group(r, o));
  checks.push_back(check_cgroup2(m));
  checks.push_back(check_clock(r));
  return checks;
}

nlohmann::ordered_json checks_json(const std::vector<Check>& checks) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const auto& c : checks) {
    nlohmann::ordered_json j{{"check", c.name}, {"status", c.status}, {"detail", c.detail}};
    j["fix"] = c.fix.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(c.fix);
    list.push_back(std::move(j));
  }
  return {{"ok", exit_status(checks) == 0}, {"checks", list}};
}

std::string checks_text(const std::vector<Check>& checks) {
  std::string out;
  for (const auto& c : checks) {
    out += fmt::format("{:<4} {:<15} {}\n",
                       c.status == "ok"     ? "ok"
                       : c.status == "warn" ? "WARN"
                                            : "FAIL",
                       c.name, c.detail);
    if (!c.fix.empty()) out += fmt::format("     {:<15} fix: {}\n", "", c.fix);
  }
  return out;
}

int exit_status(const std::vector<Check>& checks) {
  return std::any_of(checks.begin(), checks.end(), [](const Check& c) { return c.status == "fail"; }) ? 1 : 0;
}

}  // namespace gpugate::doctor
