#include "gpugate/bpf_engine.hpp"

#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstring>
#include <fstream>
#include <set>
#include <string>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>

// The skeleton's .rodata view names the decoder's table types.
extern "C" {
#include "gg_table_types.h"
}
#include "gpugate.skel.h"

namespace gpugate {
namespace {

constexpr const char* kTracefs = "/sys/kernel/tracing";
constexpr const char* kIoctlTracepoint = "/sys/kernel/tracing/events/syscalls/sys_enter_ioctl";

bool g_libbpf_verbose = false;
bool g_libbpf_probing = false;  // a refusal here is an answer, not an error

// The program whose load failed last ("prog 'NAME': failed to load"), so
// that a refusal of one part does not cost the attempts meant for another.
std::string g_libbpf_failed_prog;

int libbpf_print(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_WARN) {
    va_list copy;
    va_copy(copy, args);
    char line[512];
    vsnprintf(line, sizeof(line), format, copy);
    va_end(copy);
    std::string_view text(line);
    if (auto at = text.find("prog '");
        at != std::string_view::npos && text.find("failed to load") != std::string_view::npos) {
      auto name = text.substr(at + 6);
      g_libbpf_failed_prog = std::string(name.substr(0, name.find('\'')));
    }
  }
  if ((level == LIBBPF_DEBUG || g_libbpf_probing) && !g_libbpf_verbose) return 0;
  return vfprintf(stderr, format, args);
}

// The running kernel's BTF, loaded once to ask which functions it has.
class KernelBtf {
 public:
  KernelBtf() : btf_(btf__load_vmlinux_btf()) {}
  ~KernelBtf() { btf__free(btf_); }
  KernelBtf(const KernelBtf&) = delete;
  KernelBtf& operator=(const KernelBtf&) = delete;
  [[nodiscard]] bool has_function(const char* name) const {
    return btf_ && btf__find_by_name_kind(btf_, name, BTF_KIND_FUNC) > 0;
  }

 private:
  btf* btf_;
};

// Whether this kernel runs 32-bit system calls: a child makes one (getpid
// through int 0x80). A kernel booted or built without IA32 emulation
// (ia32_emulation=false) faults it, and refuses every 32-bit entry (int
// 0x80, SYSCALL and SYSENTER from compat mode) for the whole boot: no
// 32-bit caller exists to record.
bool ia32_syscalls_run() {
#if defined(__x86_64__)
  // Under a seccomp filter (systemd's SystemCallArchitectures=native) the
  // probe would be killed by our own filter, which says nothing of other
  // processes, and the kernel would log a seccomp kill: keep the hooks.
  std::ifstream self("/proc/self/status");
  for (std::string line; std::getline(self, line);)
    if (line.starts_with("Seccomp:") && line.find('2') != std::string::npos) return true;
  pid_t child = fork();
  if (child == 0) {
    signal(SIGSEGV, SIG_DFL);  // the kernel's answer, not a sanitizer's
    long ret;
    asm volatile("int $0x80" : "=a"(ret) : "a"(20 /* __NR_getpid, i386 */) : "memory", "r8", "r9", "r10", "r11");
    _exit(ret == getpid() ? 0 : 1);
  }
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) != child) return true;  // unknown: keep the hooks
  // SIGSYS: a seccomp filter we inherited after all; unknown, keep the hooks.
  return !(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
#else
  return true;
#endif
}

bool exists(const char* path) {
  struct stat st {};
  return stat(path, &st) == 0;
}

constexpr const char* kBpfFs = "/sys/fs/bpf";
constexpr long kBpfFsMagic = 0xcafe4a11;

// Pin file of a map: "map_events", "map_state". The read-only data is not
// pinned: each load brings its own, and the programs that use it keep it.
std::string map_pin_path(const std::string& dir, const bpf_map* map) {
  std::string name = bpf_map__name(map);
  if (name.find(".rodata") != std::string::npos || name.find(".kconfig") != std::string::npos) return {};
  std::string clean;
  for (char c : name.substr(name.find('.') == std::string::npos ? 0 : name.find('.')))
    if (c != '.') clean += c;
  return dir + "/map_" + clean;
}

std::vector<std::string> pinned_entries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') out.emplace_back(e->d_name);
  closedir(d);
  return out;
}

// The tag (hash of the instructions) of a loaded program, or of the program
// behind a link: equal tags mean the same code.
std::string prog_tag_of_fd(int prog_fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) return {};
  return std::string(reinterpret_cast<const char*>(info.tag), sizeof(info.tag));
}

std::string prog_tag_of_link(int link_fd) {
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(link_fd, &info, &len) != 0) return {};
  int prog_fd = bpf_prog_get_fd_by_id(info.prog_id);
  if (prog_fd < 0) return {};
  std::string tag = prog_tag_of_fd(prog_fd);
  close(prog_fd);
  return tag;
}

uint32_t pinned_map_max_entries(const std::string& path) {
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return 0;
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  uint32_t n = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.max_entries : 0;
  close(fd);
  return n;
}

}  // namespace

Result<void> ensure_bpffs() {
  struct statfs st {};
  if (statfs(kBpfFs, &st) == 0 && st.f_type == kBpfFsMagic) return {};
  if (mount("bpf", kBpfFs, "bpf", 0, nullptr) != 0)
    return make_error(fmt::format("cannot mount bpffs on {}: {}; run as root, or mount it yourself: "
                                  "mount -t bpf bpf {}",
                                  kBpfFs, std::strerror(errno), kBpfFs),
                      errno);
  return {};
}

Result<unsigned> unload_pinned(const std::string& pin_dir) {
  if (pin_dir.empty()) return 0u;
  unsigned removed = 0;
  std::vector<uint32_t> prog_ids;
  for (const auto& name : pinned_entries(pin_dir)) {
    std::string path = fmt::format("{}/{}", pin_dir, name);
    if (name.rfind("link_", 0) == 0) {
      if (int fd = bpf_obj_get(path.c_str()); fd >= 0) {
        bpf_link_info info{};
        uint32_t len = sizeof(info);
        if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) prog_ids.push_back(info.prog_id);
        close(fd);
      }
    }
    if (unlink(path.c_str()) != 0)
      return make_error(fmt::format("cannot remove the pin {}: {}", path, std::strerror(errno)), errno);
    removed++;
  }
  // Newer kernels detach a link whose last reference went away from a work
  // item, and release its program after that: return only once every
  // program is gone, so the gate really is.
  for (uint32_t id : prog_ids) {
    for (int i = 0;; i++) {
      int fd = bpf_prog_get_fd_by_id(id);
      if (fd < 0) break;
      close(fd);
      if (i == 500)
        return make_error(
            fmt::format("program {} of {} is still loaded 5 s after its pin was removed; something "
                        "else holds it (bpftool prog show id {})",
                        id, pin_dir, id));
      usleep(10'000);
    }
  }
  if (rmdir(pin_dir.c_str()) != 0 && errno != ENOENT)
    return make_error(fmt::format("cannot remove {}: {}", pin_dir, std::strerror(errno)), errno);
  return removed;
}

Result<void> ensure_kernel_mounts() {
  if (!exists(kIoctlTracepoint)) {
    if (mount("nodev", kTracefs, "tracefs", 0, nullptr) != 0 && errno != EBUSY)
      return make_error(fmt::format("cannot mount tracefs on {}: {}; run as root, or mount it yourself: "
                                    "mount -t tracefs nodev {}",
                                    kTracefs, std::strerror(errno), kTracefs),
                        errno);
    if (!exists(kIoctlTracepoint))
      return make_error(
          fmt::format("{} is missing: this kernel has no syscall tracepoints "
                      "(CONFIG_FTRACE_SYSCALLS); gpugate's observer needs them",
                      kIoctlTracepoint));
  }
  return {};
}

void BpfEngine::SkelDeleter::operator()(gpugate_bpf* s) const { gpugate_bpf__destroy(s); }
void BpfEngine::RingDeleter::operator()(ring_buffer* r) const { ring_buffer__free(r); }

BpfEngine::BpfEngine(BpfEngineOptions opts) : opts_(std::move(opts)) {}
BpfEngine::~BpfEngine() { stop(); }

Result<std::vector<HookStatus>> BpfEngine::start(const DeviceTable& devices) {
  g_libbpf_verbose = opts_.verbose;
  libbpf_set_print(libbpf_print);
  if (geteuid() != 0)
    return make_error("the BPF engine needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN): run gpugated as root");
  if (auto m = ensure_kernel_mounts(); !m) return m.error();

  if (opts_.fd_lookup != "auto" && opts_.fd_lookup != "btf" && opts_.fd_lookup != "core")
    return make_error(fmt::format("fd lookup {:?}: use auto, btf or core", opts_.fd_lookup));
  if (opts_.ring_bytes < 4096 || (opts_.ring_bytes & (opts_.ring_bytes - 1)))
    return make_error(fmt::format("ring buffer size {} is not a power of two of at least 4 KiB", opts_.ring_bytes));
  bool use_btf, has_compat, has_compat_sys, ia32_refused = false;
  {
    KernelBtf kernel;
    use_btf = opts_.fd_lookup == "btf" || (opts_.fd_lookup == "auto" && kernel.has_function("bpf_rdonly_cast"));
    has_compat = kernel.has_function("bpf_lsm_file_ioctl_compat");
    has_compat_sys = kernel.has_function("__ia32_compat_sys_ioctl");
    // The raw tracepoints that record 32-bit callers run on every syscall
    // (BENCHMARKS.md); where the kernel runs no 32-bit syscall they record
    // nothing and are left out.
    if (has_compat_sys && !ia32_syscalls_run()) {
      has_compat_sys = false;
      ia32_refused = true;
    }
  }

  // First the gate (BPF LSM), if a mode that can deny was asked for; where
  // the kernel refuses LSM programs, the entry tracepoint instead.
  std::vector<HookStatus> hooks;
  std::string lsm_refusal;
  bool want_gate = opts_.mode != GG_MODE_OBSERVE;
  bool have_pins = false;
  if (!opts_.pin_dir.empty()) {
    if (auto m = ensure_bpffs(); !m) return m.error();
    have_pins = !pinned_entries(opts_.pin_dir).empty();
    if (have_pins && !want_gate)
      return make_error(
          fmt::format("a pinned gate is in force at {} (left by an earlier gpugated); observe mode "
                      "would leave it unwatched: start with --mode enforce or monitor to take it "
                      "over, or remove it first with gpugated --unload",
                      opts_.pin_dir));
    if (want_gate && mkdir(opts_.pin_dir.c_str(), 0700) != 0 && errno != EEXIST)
      return make_error(fmt::format("cannot create the pin directory {}: {}", opts_.pin_dir, std::strerror(errno)),
                        errno);
    // A restarted daemon uses the ring it finds, whatever --ring-mib says.
    if (uint32_t pinned_ring = pinned_map_max_entries(opts_.pin_dir + "/map_events");
        pinned_ring && pinned_ring != opts_.ring_bytes) {
      hooks.push_back({"ring", true,
                       fmt::format("the pinned ring buffer is {} KiB (not the {} KiB asked for); it is kept so no "
                                   "queued record is lost",
                                   pinned_ring / 1024, opts_.ring_bytes / 1024)});
      opts_.ring_bytes = pinned_ring;
    }
  }
  bool fexit_results = false;
  std::string fexit_refusal;
  // Attempts, most complete first: the gate with fexit results and the knob
  // hook; without fexit; without the knob hook (each with and without
  // fexit); the observer alone. A kernel that refuses one part keeps the rest.
  bool knob_hook = false;
  std::string knob_refusal;
  for (int attempt = want_gate ? 0 : 4; attempt < 5; attempt++) {
    bool gate = attempt < 4;
    fexit_results = gate && attempt % 2 == 0;
    knob_hook = attempt < 2;
    skel_.reset(gpugate_bpf__open());
    if (!skel_)
      return make_error(fmt::format("cannot open the observer's BPF object: {}", std::strerror(errno)), errno);
    skel_->rodata->wakeup_bytes = opts_.wakeup_bytes;
    if (int err = bpf_map__set_max_entries(skel_->maps.events, opts_.ring_bytes); err)
      return make_error(fmt::format("cannot size the ring buffer: {}", std::strerror(-err)), -err);
    bpf_program__set_autoload(skel_->progs.gg_ioctl_enter, !gate && use_btf);
    bpf_program__set_autoload(skel_->progs.gg_ioctl_enter_core, !gate && !use_btf);
    // 32-bit callers: the syscall events skip them, the raw tracepoints do not
    bpf_program__set_autoload(skel_->progs.gg_compat_ioctl_enter, !gate && has_compat_sys);
    bpf_program__set_autoload(skel_->progs.gg_compat_ioctl_exit, !gate && has_compat_sys);
    bpf_program__set_autoload(skel_->progs.gg_file_ioctl, gate);
    bpf_program__set_autoload(skel_->progs.gg_file_ioctl_compat, gate && has_compat);
    bpf_program__set_autoload(skel_->progs.gg_knob_write, gate && knob_hook);
    bpf_program__set_autoload(skel_->progs.gg_knob_mmap, gate && knob_hook);
    bpf_program__set_autoload(skel_->progs.gg_ioctl_exit, !fexit_results);
    bpf_program__set_autoload(skel_->progs.gg_sys_ioctl_exit, fexit_results);
    bpf_program__set_autoload(skel_->progs.gg_compat_sys_ioctl_exit, fexit_results && has_compat_sys);
    for (bpf_program* guard_prog :
         {skel_->progs.gg_guard_bpf, skel_->progs.gg_guard_bpf_map, skel_->progs.gg_guard_bpf_prog,
          skel_->progs.gg_guard_unlink, skel_->progs.gg_guard_rename, skel_->progs.gg_guard_umount})
      bpf_program__set_autoload(guard_prog, gate && opts_.guard);
    if (gate && !opts_.pin_dir.empty()) {
      bpf_map* map = nullptr;
      bpf_object__for_each_map(map, skel_->obj) {
        std::string path = map_pin_path(opts_.pin_dir, map);
        if (path.empty()) continue;
        if (int perr = bpf_map__set_pin_path(map, path.c_str()); perr)
          return make_error(fmt::format("cannot pin map {}: {}", path, std::strerror(-perr)), -perr);
      }
    }
    if (opts_.verbose) {  // the verifier's statistics per program
      bpf_program* vp = nullptr;
      bpf_object__for_each_program(vp, skel_->obj) bpf_program__set_log_level(vp, 4);
    }
    g_libbpf_probing = gate && !have_pins;
    g_libbpf_failed_prog.clear();
    int err = gpugate_bpf__load(skel_.get());
    g_libbpf_probing = false;
    if (err && gate && have_pins && attempt == 1)
      return make_error(fmt::format("the pinned gate at {} does not fit this gpugated's maps ({}): it was left by "
                                    "another version. Remove it with gpugated --unload (enforcement stops until "
                                    "this daemon starts) and start again",
                                    opts_.pin_dir, std::strerror(-err)),
                        -err);
    if (err) {
      if (fexit_results) fexit_refusal = std::strerror(-err);
      if (knob_hook) knob_refusal = std::strerror(-err);
      if (attempt == 3) lsm_refusal = std::strerror(-err);
      // the knob hook was not what failed: the attempts without it would fail alike
      if (attempt == 1 && g_libbpf_failed_prog != "gg_knob_write" && g_libbpf_failed_prog != "gg_knob_mmap") {
        lsm_refusal = std::strerror(-err);
        attempt = 3;
      }
      if (gate) continue;
      return make_error(fmt::format("the kernel refused the observer's BPF programs: {}; run with --verbose "
                                    "for the verifier log",
                                    std::strerror(-err)),
                        -err);
    }
    mode_ = gate ? opts_.mode : static_cast<unsigned>(GG_MODE_OBSERVE);
    pinned_ = gate && !opts_.pin_dir.empty();
    break;
  }
  if (!pinned_ && !opts_.pin_dir.empty()) rmdir(opts_.pin_dir.c_str());  // only if empty: nothing was pinned
  auto state = read_state();
  if (!state) return state.error();
  if (pinned_ && have_pins && state->version != 0 && state->version != GG_STATE_VERSION)
    return make_error(
        fmt::format("the pinned gate at {} keeps its state in version {}, this gpugated in version {}: "
                    "remove it with gpugated --unload (enforcement stops until this daemon starts) "
                    "and start again",
                    opts_.pin_dir, state->version, GG_STATE_VERSION));
  takeover_ = claim_restart_state(*state, pinned_ && have_pins);
  if (auto w = write_state(*state); !w) return w.error();
  if (!knob_hook && !knob_refusal.empty() && mode_ != GG_MODE_OBSERVE)
    hooks.push_back({"lsm/file_permission", false,
                     fmt::format("refused by this kernel ({}): writes to the GPUs' sysfs and procfs knobs and "
                                 "mappings of their BARs are not gated; run with --verbose for the verifier log",
                                 knob_refusal)});
  if (!fexit_results && !fexit_refusal.empty() && mode_ != GG_MODE_OBSERVE)
    hooks.push_back({"fexit/__x64_sys_ioctl", false,
                     fmt::format("refused by this kernel ({}): results come from the sys_exit_ioctl tracepoint, "
                                 "which slows every syscall",
                                 fexit_refusal)});
  if (!lsm_refusal.empty())
    hooks.push_back({"lsm.s/file_ioctl", false,
                     fmt::format("refused by this kernel ({}): BPF LSM programs do not load here, so gated "
                                 "commands are recorded as would-deny, not blocked",
                                 lsm_refusal)});
  if (auto r = set_devices(devices); !r) return r.error();
  // The policy is in the map before any hook attaches: no window under another one.
  if (auto r = set_policy(opts_.policy); !r) return r.error();

  struct {
    const char* name;
    bpf_program* prog;
    bpf_link** link;
    const char* detail;
  } progs[] = {
      {"lsm.s/file_ioctl", skel_->progs.gg_file_ioctl, &skel_->links.gg_file_ioctl,
       "gate: every ioctl on a GPU node decided before the driver runs"},
      {"lsm/file_ioctl_compat", skel_->progs.gg_file_ioctl_compat, &skel_->links.gg_file_ioctl_compat,
       "gate: the same for 32-bit callers"},
      {"lsm/file_permission", skel_->progs.gg_knob_write, &skel_->links.gg_knob_write,
       "gate: writes to a GPU's sysfs and procfs knobs (power/control, reset, remove, config, power caps, ...)"},
      {"lsm/mmap_file", skel_->progs.gg_knob_mmap, &skel_->links.gg_knob_mmap,
       "gate: mappings of a GPU's BARs (resourceN, resourceN_wc) and of /dev/mem over them"},
      {"tp/syscalls/sys_enter_ioctl", use_btf ? skel_->progs.gg_ioctl_enter : skel_->progs.gg_ioctl_enter_core,
       use_btf ? &skel_->links.gg_ioctl_enter : &skel_->links.gg_ioctl_enter_core,
       "observe: every ioctl on a GPU node, decoded in the kernel"},
      {"tp/syscalls/sys_exit_ioctl", skel_->progs.gg_ioctl_exit, &skel_->links.gg_ioctl_exit,
       "results: the return value and the RM status word"},
      {"fexit/__x64_sys_ioctl", skel_->progs.gg_sys_ioctl_exit, &skel_->links.gg_sys_ioctl_exit,
       "results: the return value and the RM status word (costs ioctls only)"},
      {"fexit/__ia32_compat_sys_ioctl", skel_->progs.gg_compat_sys_ioctl_exit, &skel_->links.gg_compat_sys_ioctl_exit,
       "results of 32-bit callers"},
      {"raw_tp/sys_enter", skel_->progs.gg_compat_ioctl_enter, &skel_->links.gg_compat_ioctl_enter,
       "observe: 32-bit callers' ioctls (the syscall events skip them)"},
      {"raw_tp/sys_exit", skel_->progs.gg_compat_ioctl_exit, &skel_->links.gg_compat_ioctl_exit,
       "results of 32-bit callers"},
      {"lsm/bpf", skel_->progs.gg_guard_bpf, &skel_->links.gg_guard_bpf,
       "guard: only gpugated writes the gate's maps or detaches its links"},
      {"lsm/bpf_map", skel_->progs.gg_guard_bpf_map, &skel_->links.gg_guard_bpf_map,
       "guard: only gpugated gets fds of the gate's maps"},
      {"lsm/bpf_prog", skel_->progs.gg_guard_bpf_prog, &skel_->links.gg_guard_bpf_prog,
       "guard: only gpugated gets fds of the gate's programs"},
      {"lsm/inode_unlink", skel_->progs.gg_guard_unlink, &skel_->links.gg_guard_unlink,
       "guard: the gate's pins cannot be removed"},
      {"lsm/inode_rename", skel_->progs.gg_guard_rename, &skel_->links.gg_guard_rename,
       "guard: the gate's pins cannot be moved"},
      {"lsm/sb_umount", skel_->progs.gg_guard_umount, &skel_->links.gg_guard_umount,
       "guard: the bpffs holding the pins cannot be unmounted"},
  };
  bool any = false;
  std::set<std::string> pins_in_use;
  for (auto& p : progs) {
    if (!bpf_program__autoload(p.prog)) continue;
    std::string link_pin = pinned_ ? opts_.pin_dir + "/link_" + bpf_program__name(p.prog) : std::string();
    std::string takeover_note;
    bpf_link* link = nullptr;
    bpf_link* old = link_pin.empty() ? nullptr : bpf_link__open(link_pin.c_str());
    if (old && prog_tag_of_link(bpf_link__fd(old)) == prog_tag_of_fd(bpf_program__fd(p.prog))) {
      link = old;  // same code on the same maps: leave it attached
      takeover_.kept_links++;
      takeover_note = fmt::format(" [taken over from pid {}, never detached]", takeover_.previous_pid);
    } else {
      // New code: attach it, then detach the old; both decide alike meanwhile.
      link = bpf_program__attach(p.prog);
      if (!link) {
        hooks.push_back({p.name, false, fmt::format("attach failed: {}", std::strerror(errno))});
        if (old) bpf_link__destroy(old);
        continue;
      }
      if (old) {
        bpf_link__unpin(old);
        bpf_link__destroy(old);
        takeover_.replaced_links++;
        takeover_note = " [replaced the program left by the previous daemon]";
      }
      if (!link_pin.empty()) {
        if (int perr = bpf_link__pin(link, link_pin.c_str()); perr) {
          bpf_link__destroy(link);
          return make_error(fmt::format("cannot pin {}: {}", link_pin, std::strerror(-perr)), -perr);
        }
      }
    }
    if (!link_pin.empty()) pins_in_use.insert("link_" + std::string(bpf_program__name(p.prog)));
    *p.link = link;  // the skeleton closes it; a pinned link stays attached
    any = true;
    if (bpf_link_info info{}; [&] {
          uint32_t len = sizeof(info);
          return bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) == 0;
        }())
      link_ids_.push_back(info.id);
    prog_tags_.push_back(prog_tag_of_fd(bpf_program__fd(p.prog)));
    // Only the entry tracepoint goes from an fd to its device; the LSM hooks get the file.
    bool finds_fd = p.prog == skel_->progs.gg_ioctl_enter || p.prog == skel_->progs.gg_ioctl_enter_core;
    hooks.push_back(
        {p.name, true,
         finds_fd ? fmt::format("{} (fd lookup: {})", p.detail, use_btf ? "BTF + bpf_rdonly_cast" : "CO-RE probe reads")
                  : std::string(p.detail) + takeover_note});
  }
  // Hooks an earlier daemon pinned that this one does not use (another
  // result hook, say) are detached now that their replacements are in.
  if (pinned_)
    for (const auto& name : pinned_entries(opts_.pin_dir))
      if (name.rfind("link_", 0) == 0 && !pins_in_use.count(name)) unlink((opts_.pin_dir + "/" + name).c_str());
  if (!any) return make_error("no observer hook attached; see the hook list for why");
  if (mode_ != GG_MODE_OBSERVE && !has_compat)
    hooks.push_back({"lsm/file_ioctl_compat", false,
                     "this kernel has no file_ioctl_compat LSM hook: 32-bit callers' ioctls are not gated"});
  if (ia32_refused)
    hooks.push_back({mode_ == GG_MODE_OBSERVE ? "raw_tp/sys_enter" : "fexit/__ia32_compat_sys_ioctl", false,
                     "not needed: this kernel runs no 32-bit system call (a probe's int 0x80 faulted; "
                     "ia32_emulation is off for this boot), so no 32-bit caller can reach a GPU node",
                     false});

  if (mode_ != GG_MODE_OBSERVE && opts_.guard) {
    if (auto g = arm_guard(); !g) return g.error();
  }

  // The reserve ring first: libbpf drains the rings in the order added, and
  // an entry there must come before its exit in the main ring.
  ring_.reset(ring_buffer__new(bpf_map__fd(skel_->maps.gated_events), &BpfEngine::on_record, this, nullptr));
  if (!ring_) return make_error(fmt::format("cannot open the reserve ring buffer: {}", std::strerror(errno)), errno);
  if (int err = ring_buffer__add(ring_.get(), bpf_map__fd(skel_->maps.events), &BpfEngine::on_record, this); err)
    return make_error(fmt::format("cannot open the ring buffer: {}", std::strerror(-err)), -err);
  return hooks;
}

Result<gg_state> BpfEngine::read_state() const {
  gg_state st{};
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.state), &zero, &st) != 0)
    return make_error(fmt::format("cannot read the gate's state map: {}", std::strerror(errno)), errno);
  return st;
}

Result<void> BpfEngine::write_state(const gg_state& st) const {
  uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.state), &zero, &st, BPF_ANY) != 0)
    return make_error(fmt::format("cannot write the gate's state map: {}", std::strerror(errno)), errno);
  return {};
}

namespace {

// Kernel dev_t of a stat's st_dev (the superblock's s_dev, as BPF reads it).
uint32_t kernel_dev_of(dev_t d) { return kernel_dev(major(d), minor(d)); }

template <class F>
uint32_t object_id(int fd, F info_id) {
  return fd < 0 ? 0 : info_id(fd);
}

uint32_t map_id(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

uint32_t prog_id(int fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

}  // namespace

// Names the daemon and its objects to the self-protection: every map,
// program and link of this gate, the executable (its directory and name)
// that may touch them, and the pin directory. Armed last, once complete.
Result<void> BpfEngine::arm_guard() {
  int set_fd = bpf_map__fd(skel_->maps.guarded);
  std::set<std::pair<uint32_t, uint32_t>> want;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, skel_->obj) {
    if (uint32_t id = object_id(bpf_map__fd(map), map_id)) want.insert({GG_OBJ_MAP, id});
  }
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel_->obj) {
    if (!bpf_program__autoload(prog)) continue;
    if (uint32_t id = object_id(bpf_program__fd(prog), prog_id)) want.insert({GG_OBJ_PROG, id});
  }
  for (uint32_t id : link_ids_) want.insert({GG_OBJ_LINK, id});
  for (const auto& [kind, id] : want) {
    gg_guarded_key key{kind, id};
    uint8_t one = 1;
    if (bpf_map_update_elem(set_fd, &key, &one, BPF_ANY) != 0)
      return make_error(fmt::format("cannot arm the gate's self-protection: {}", std::strerror(errno)), errno);
  }
  // Objects of an earlier daemon that this one replaced are no longer its own.
  gg_guarded_key key{}, next{};
  std::vector<gg_guarded_key> stale;
  for (bool first = true; bpf_map_get_next_key(set_fd, first ? nullptr : &key, &next) == 0; first = false) {
    key = next;
    if (!want.count({next.kind, next.id})) stale.push_back(next);
  }
  for (const auto& k : stale) bpf_map_delete_elem(set_fd, &k);

  gg_guard g{};
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return make_error(fmt::format("cannot read /proc/self/exe: {}", std::strerror(errno)), errno);
  exe[n] = 0;
  std::string path(exe), dir = path.substr(0, path.rfind('/')), base = path.substr(path.rfind('/') + 1);
  struct stat st {};
  if (stat(dir.empty() ? "/" : dir.c_str(), &st) != 0)
    return make_error(fmt::format("cannot stat {}: {}", dir, std::strerror(errno)), errno);
  g.exe_dir_ino = st.st_ino;
  g.exe_dir_dev = kernel_dev_of(st.st_dev);
  std::strncpy(g.exe_name, base.c_str(), sizeof(g.exe_name) - 1);
  if (pinned_) {
    if (stat(opts_.pin_dir.c_str(), &st) != 0)
      return make_error(fmt::format("cannot stat {}: {}", opts_.pin_dir, std::strerror(errno)), errno);
    g.pin_dir_ino = st.st_ino;
    g.pin_dev = kernel_dev_of(st.st_dev);
  }
  g.enabled = 1;
  uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.guard), &zero, &g, BPF_ANY) != 0)
    return make_error(fmt::format("cannot arm the gate's self-protection: {}", std::strerror(errno)), errno);
  guard_armed_ = true;
  return {};
}

std::vector<std::string> BpfEngine::audit() const {
  std::vector<std::string> out;
  if (!skel_ || mode_ == GG_MODE_OBSERVE) return out;
  // Links: still there, still running this daemon's programs.
  for (uint32_t id : link_ids_) {
    int fd = bpf_link_get_fd_by_id(id);
    if (fd < 0) {
      out.push_back(fmt::format("link {} is gone ({}): a hook was detached", id, std::strerror(errno)));
      continue;
    }
    std::string tag = prog_tag_of_link(fd);
    close(fd);
    if (std::find(prog_tags_.begin(), prog_tags_.end(), tag) == prog_tags_.end())
      out.push_back(fmt::format("link {} runs a program that is not one of this daemon's", id));
  }
  // Policy: what was installed, byte for byte.
  gg_policy kp{};
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.policy), &zero, &kp) != 0)
    out.push_back("the policy map cannot be read");
  else if (std::memcmp(&kp, &policy_, sizeof(kp)) != 0)
    out.push_back("the policy in the kernel differs from the policy this daemon installed");
  // Devices and majors.
  if (devices_) {
    int fd = bpf_map__fd(skel_->maps.devices);
    std::set<uint32_t> majors_wanted{195, 226};
    for (const auto& d : devices_->devices()) {
      gg_device kd{};
      majors_wanted.insert(kernel_dev_major(d.dev) & (GG_MAJORS - 1));
      if (bpf_map_lookup_elem(fd, &d.dev, &kd) != 0 || std::memcmp(&kd, &d.info, sizeof(kd)) != 0)
        out.push_back(
            fmt::format("device {} ({}) is missing or changed in the kernel's table", d.path, d.rdev_string()));
    }
    uint32_t key = 0, next = 0;
    for (bool first = true; bpf_map_get_next_key(fd, first ? nullptr : &key, &next) == 0; first = false) {
      key = next;
      if (!devices_->find(next))
        out.push_back(fmt::format("the kernel's device table has {}:{}, which this daemon did not put there",
                                  kernel_dev_major(next), kernel_dev_minor(next)));
    }
    int mfd = bpf_map__fd(skel_->maps.majors);
    for (uint32_t m : majors_wanted) {
      uint8_t on = 0;
      if (bpf_map_lookup_elem(mfd, &m, &on) != 0 || !on) out.push_back(fmt::format("major {} is no longer watched", m));
    }
  }
  // Grants: exactly those this daemon installed and has not ended.
  auto live = grants();
  if (!live) {
    out.push_back("the grants cannot be read: " + live.error().message);
  } else {
    for (const auto& g : *live) {
      auto it = std::find_if(installed_.begin(), installed_.end(), [&](const Grant& i) { return i.id == g.id; });
      if (it == installed_.end()) {
        out.push_back(
            fmt::format("grant {} ({}) is in the kernel but this daemon never installed it", g.id, class_name(g.cls)));
        continue;
      }
      if (it->cls != g.cls || it->not_before_ns != g.not_before_ns || it->not_after_ns != g.not_after_ns ||
          it->scope != g.scope || it->scope_id != g.scope_id || it->pkind != g.pkind || it->key_index != g.key_index ||
          it->key_value != g.key_value || g.uses > it->uses)
        out.push_back(fmt::format("grant {} in the kernel differs from the one this daemon installed", g.id));
    }
  }
  // The guard itself.
  if (guard_armed_) {
    gg_guard g{};
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.guard), &zero, &g) != 0 || !g.enabled)
      out.push_back("the self-protection was switched off");
  }
  return out;
}

Result<uint32_t> BpfEngine::install_grant(Grant grant) {
  if (!skel_) return make_error("BPF engine not started");
  if (auto c = check_grant(grant, devices_); !c) return c.error();
  auto st = read_state();
  if (!st) return st.error();
  grant.id = next_grant_id(*st, grant.id);
  if (auto w = write_state(*st); !w) return w.error();
  // Uses first: a node key without them allows nothing.
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.grant_uses), &grant.id, &grant.uses, BPF_NOEXIST) != 0)
    return make_error(fmt::format("cannot install the grant: {}", std::strerror(errno)), errno);
  gg_grant value = grant_value(grant);
  installed_.push_back(grant);
  for (uint32_t dev : grant.devs) {
    gg_grant_key key = grant_key(grant, dev);
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.grants), &key, &value, BPF_ANY) != 0) {
      int err = errno;
      (void)revoke_grant(grant.id);
      return make_error(fmt::format("cannot install the grant: {}", std::strerror(err)), err);
    }
  }
  return grant.id;
}

namespace {
// Calls f(key, grant) for every grant key in the map.
template <class F>
void for_each_grant(int fd, F f) {
  gg_grant_key key{}, next{};
  bool first = true;
  while (bpf_map_get_next_key(fd, first ? nullptr : &key, &next) == 0) {
    first = false;
    key = next;
    gg_grant g{};
    if (bpf_map_lookup_elem(fd, &key, &g) == 0) f(key, g);
  }
}
}  // namespace

Result<void> BpfEngine::revoke_grant(uint32_t id) {
  if (!skel_) return make_error("BPF engine not started");
  int fd = bpf_map__fd(skel_->maps.grants);
  std::vector<gg_grant_key> keys;
  for_each_grant(fd, [&](const gg_grant_key& key, const gg_grant& g) {
    if (g.id == id) keys.push_back(key);
  });
  bool had_uses = bpf_map_delete_elem(bpf_map__fd(skel_->maps.grant_uses), &id) == 0;
  std::erase_if(installed_, [&](const Grant& g) { return g.id == id; });
  for (const auto& key : keys) bpf_map_delete_elem(fd, &key);
  if (keys.empty() && !had_uses)
    return make_error(fmt::format("no live grant with id {} (gpugate grants lists them)", id));
  return {};
}

Result<std::vector<Grant>> BpfEngine::grants() const {
  if (!skel_) return make_error("BPF engine not started");
  std::vector<Grant> out;
  for_each_grant(bpf_map__fd(skel_->maps.grants), [&](const gg_grant_key& key, const gg_grant& g) {
    int64_t uses = 0;
    (void)bpf_map_lookup_elem(bpf_map__fd(skel_->maps.grant_uses), &g.id, &uses);
    fold_grant_row(out, key, g, uses);
  });
  sort_grants(out);
  return out;
}

Result<void> BpfEngine::set_kmod_owned(uint8_t policy_flags) {
  kmod_owned_ = policy_flags & GG_POLF_KMOD_ALL;
  if (!skel_) return {};
  gg_policy p = policy_;
  return set_policy(p);
}

Result<void> BpfEngine::set_policy(gg_policy policy) {
  if (!skel_) return make_error("BPF engine not started");
  policy.mode = static_cast<uint8_t>(mode_);
  policy.flags = static_cast<uint8_t>((policy.flags & ~GG_POLF_KMOD_ALL) | kmod_owned_);
  policy.fail_closed_vendors = gg_policy_fail_closed_vendors(&policy);
  uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.policy), &zero, &policy, BPF_ANY) != 0)
    return make_error(fmt::format("cannot install the policy: {}", std::strerror(errno)), errno);
  policy_ = policy;
  return {};
}

Result<void> BpfEngine::set_devices(const DeviceTable& devices) {
  if (!skel_) return make_error("BPF engine not started");
  devices_ = &devices;
  int fd = bpf_map__fd(skel_->maps.devices);
  // New entries first, stale ones after: a node watched before and after is
  // never absent in between (the map may be a running gate's).
  // NVIDIA's and DRM's majors always: a node of theirs that the table does
  // not know yet (mknod, hot-plug) is still a GPU node to the kernel side.
  std::set<uint32_t> wanted, wanted_majors{195, 226};
  int mfd = bpf_map__fd(skel_->maps.majors);
  uint8_t on = 1, off = 0;
  for (const auto& d : devices.devices()) {
    if (bpf_map_update_elem(fd, &d.dev, &d.info, BPF_ANY) != 0)
      return make_error(fmt::format("cannot add {} to the observer's device map: {}", d.path, std::strerror(errno)),
                        errno);
    wanted.insert(d.dev);
    wanted_majors.insert(kernel_dev_major(d.dev) & (GG_MAJORS - 1));
  }
  for (uint32_t m : wanted_majors)
    if (bpf_map_update_elem(mfd, &m, &on, BPF_ANY) != 0)
      return make_error(fmt::format("cannot watch major {}: {}", m, std::strerror(errno)), errno);
  uint32_t key = 0, next = 0;
  bool first = true;
  std::vector<uint32_t> stale;
  while (bpf_map_get_next_key(fd, first ? nullptr : &key, &next) == 0) {
    first = false;
    key = next;
    if (!wanted.count(next)) stale.push_back(next);
  }
  for (uint32_t k : stale) bpf_map_delete_elem(fd, &k);
  for (uint32_t m = 0; m < GG_MAJORS; m++) {
    uint8_t was = 0;
    if (!wanted_majors.count(m) && bpf_map_lookup_elem(mfd, &m, &was) == 0 && was)
      bpf_map_update_elem(mfd, &m, &off, BPF_ANY);
  }
  return set_knobs(devices);
}

// The GPUs' knobs, keyed as the kernel sees them (inode, filesystem); new
// ones first, stale ones after, as for the nodes.
Result<void> BpfEngine::set_knobs(const DeviceTable& devices) {
  int fd = bpf_map__fd(skel_->maps.knobs);
  auto rows = knob_rows(devices);
  std::set<std::pair<uint64_t, uint32_t>> wanted;
  for (const auto& [key, value] : rows) {
    if (bpf_map_update_elem(fd, &key, &value, BPF_ANY) != 0)
      return make_error(
          fmt::format("cannot add knob inode {} to the gate's knob map: {}", key.ino, std::strerror(errno)), errno);
    wanted.insert({key.ino, key.fs_magic});
  }
  gg_knob_key key{}, next{};
  std::vector<gg_knob_key> stale;
  for (bool first = true; bpf_map_get_next_key(fd, first ? nullptr : &key, &next) == 0; first = false) {
    key = next;
    if (!wanted.count({next.ino, next.fs_magic})) stale.push_back(next);
  }
  for (const auto& k : stale) bpf_map_delete_elem(fd, &k);
  // The BARs /dev/mem reaches: the whole array is rewritten, unused slots zero.
  int rfd = bpf_map__fd(skel_->maps.bar_ranges);
  auto ranges = bar_rows(devices);
  for (uint32_t i = 0; i < GG_BAR_RANGES_MAX; i++) {
    gg_bar_range r = i < ranges.size() ? ranges[i] : gg_bar_range{};
    if (bpf_map_update_elem(rfd, &i, &r, BPF_ANY) != 0)
      return make_error(fmt::format("cannot write the gate's BAR ranges: {}", std::strerror(errno)), errno);
  }
  return {};
}

int BpfEngine::on_record(void* ctx, void* data, size_t size) {
  auto* self = static_cast<BpfEngine*>(ctx);
  if (size < sizeof(gg_event_hdr)) {
    self->malformed_++;
    return 0;
  }
  gg_event_hdr hdr;
  std::memcpy(&hdr, data, sizeof(hdr));
  if (hdr.type == GG_EV_IOCTL_ENTER && size >= sizeof(gg_ioctl_enter)) {
    self->handler_->on_enter(*static_cast<const gg_ioctl_enter*>(data));
  } else if (hdr.type == GG_EV_IOCTL_EXIT && size >= sizeof(gg_ioctl_exit)) {
    self->handler_->on_exit(*static_cast<const gg_ioctl_exit*>(data));
  } else if (hdr.type == GG_EV_GUARD && size >= sizeof(gg_guard_event)) {
    self->handler_->on_guard(*static_cast<const gg_guard_event*>(data));
  } else if (hdr.type == GG_EV_KNOB && size >= sizeof(gg_knob_event)) {
    self->handler_->on_knob(*static_cast<const gg_knob_event*>(data));
  } else {
    self->malformed_++;
    return 0;
  }
  self->delivered_++;
  if (self->delivered_ == 1) self->poll_deadline_ = std::chrono::steady_clock::now() + kMaxPollTime;
  if (self->delivered_ >= kMaxRecordsPerPoll ||
      (self->delivered_ % 64 == 0 && std::chrono::steady_clock::now() >= self->poll_deadline_)) {
    // libbpf moves past this record, stops and returns our error.
    self->backlog_ = true;
    return -ECANCELED;
  }
  return 0;
}

Result<size_t> BpfEngine::poll(std::chrono::milliseconds timeout, EventHandler& handler) {
  if (!ring_) return make_error("BPF engine not started");
  handler_ = &handler;
  delivered_ = 0;
  backlog_ = false;
  // Records are submitted without wakeups until wakeup_bytes are queued, so
  // drain first, then sleep in epoll, then drain whatever came meanwhile.
  int n = ring_buffer__consume(ring_.get());
  if (n >= 0 && delivered_ == 0) {
    n = ring_buffer__poll(ring_.get(), static_cast<int>(timeout.count()));
    if (n >= 0 && !backlog_) n = ring_buffer__consume(ring_.get());
  }
  handler_ = nullptr;
  if (backlog_) n = 0;  // the bound, not an error
  if (n < 0 && n != -EINTR) return make_error(fmt::format("reading the ring buffer failed: {}", std::strerror(-n)), -n);
  return delivered_;
}

EngineStats BpfEngine::stats() const {
  EngineStats s;
  if (!skel_) return s;
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return s;
  std::vector<gg_class_counters> per_cpu(static_cast<size_t>(ncpu));
  int fd = bpf_map__fd(skel_->maps.counters);
  for (uint32_t cls = 0; cls < GG_CLASS_COUNT; cls++) {
    if (bpf_map_lookup_elem(fd, &cls, per_cpu.data()) != 0) continue;
    for (const auto& c : per_cpu) {
      s.per_class[cls].seen += c.seen;
      s.per_class[cls].dropped += c.dropped;
      s.per_class[cls].exit_dropped += c.exit_dropped;
      s.per_class[cls].no_state += c.no_state;
    }
  }
  gg_globals g{};
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.globals), &zero, &g) == 0) {
    s.fd_lookup_faults = g.fd_lookup_faults;
    s.guard_dropped = g.guard_dropped;
  }
  return s;
}

int BpfEngine::wait_fd() const { return ring_ ? ring_buffer__epoll_fd(ring_.get()) : -1; }

EngineStats BpfEngine::acknowledged_losses() const {
  if (!skel_ || !pinned_) return {};
  auto st = read_state();
  return st ? acknowledged_in(*st) : EngineStats{};
}

void BpfEngine::acknowledge(const EngineStats& recorded) {
  if (!skel_ || !pinned_) return;
  auto st = read_state();
  if (!st) return;
  acknowledge_in(*st, recorded);
  (void)write_state(*st);
}

void BpfEngine::stop() {
  ring_.reset();
  skel_.reset();
}

}  // namespace gpugate
