#include "gpugate/kmod_engine.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "gpugate/decode.hpp"

namespace gpugate {
namespace {

std::string hook_kind_name(unsigned kind) {
  return kind == GG_KHOOK_KPROBE ? "kprobe" : kind == GG_KHOOK_TABLE ? "ftrace (each handler)" : "ftrace";
}

std::string_view hook_role(const gg_kmod_hook& h) {
  std::string_view symbol(h.symbol, strnlen(h.symbol, sizeof(h.symbol)));
  if (symbol == "rm_ioctl") return "decides RM escapes on the driver's copy of their struct";
  if (symbol == "os_memcpy_from_user") return "decides RM controls on the params RM copied";
  if (symbol == "nvidia_unlocked_ioctl") return "the call's context; escapes the glue answers itself";
  if (symbol == "drm_ioctl_kernel") return "decides DRM ioctls on the kernel copy of their argument";
  if (symbol == "sysfs_kf_write" || symbol == "sysfs_kf_bin_write")
    return "decides writes to the GPUs' sysfs knobs on the kernel's copy of the bytes";
  if (symbol == "proc_reg_write") return "decides writes to the GPUs' procfs knobs";
  if (symbol == "sysfs_kf_bin_mmap") return "decides mappings of the GPUs' BAR files";
  if (symbol == "mmap_mem") return "decides mappings of /dev/mem over the GPUs' BARs";
  return "the call's context";
}

// Opens the node and says hello; owner: take the module over.
Result<std::pair<UniqueFd, gg_kmod_hello>> open_module(const std::string& device, bool owner) {
  UniqueFd fd(::open(device.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    int err = errno;
    if (err == ENOENT)
      return make_error(fmt::format("{} does not exist: gpugate.ko is not loaded (modprobe gpugate, or insmod "
                                    "kmod/gpugate.ko; docs/kernel-module.md)",
                                    device),
                        err);
    return make_error(fmt::format("cannot open {}: {}{}", device, std::strerror(err),
                                  err == EPERM || err == EACCES ? " (it is root's: run gpugated as root)" : ""),
                      err);
  }
  gg_kmod_hello h{};
  h.abi = GG_KMOD_ABI;
  h.flags = owner ? GG_KHELLO_OWNER : 0;
  if (::ioctl(fd.get(), GG_KIOC_HELLO, &h) != 0) {
    int err = errno;
    if (err == EPROTO)
      return make_error(fmt::format("gpugate.ko speaks ABI {}, this gpugated ABI {}: load the module built from the "
                                    "same source (kmod/) as this daemon",
                                    h.abi, GG_KMOD_ABI),
                        err);
    if (err == EBUSY)
      return make_error(fmt::format("gpugate.ko is owned by another process (pid {}): one gpugated at a time; stop "
                                    "it first",
                                    h.owner_pid),
                        err);
    return make_error(fmt::format("{}: hello refused: {}", device, std::strerror(err)), err);
  }
  return std::make_pair(std::move(fd), h);
}

}  // namespace

bool kmod_present(const std::string& device) {
  struct stat st {};
  return ::stat(device.c_str(), &st) == 0 && S_ISCHR(st.st_mode);
}

Result<uint64_t> kmod_release(const std::string& device) {
  auto m = open_module(device, true);
  if (!m) return m.error();
  auto& [fd, hello] = *m;
  uint32_t off = 0;
  if (::ioctl(fd.get(), GG_KIOC_HOLD, &off) != 0)
    return make_error(fmt::format("gpugate.ko refused to let go: {}", std::strerror(errno)), errno);
  gg_policy p{};
  if (::ioctl(fd.get(), GG_KIOC_GET_POLICY, &p) != 0)
    return make_error(fmt::format("cannot read gpugate.ko's policy: {}", std::strerror(errno)), errno);
  p.mode = GG_MODE_OBSERVE;
  if (::ioctl(fd.get(), GG_KIOC_SET_POLICY, &p) != 0)
    return make_error(fmt::format("cannot stop gpugate.ko enforcing: {}", std::strerror(errno)), errno);
  // Grants end with the gate that holds them.
  std::vector<gg_kmod_grant> g(GG_KMOD_MAX_GRANTS);
  gg_kmod_array a{static_cast<uint32_t>(g.size()), 0, reinterpret_cast<uint64_t>(g.data())};
  if (::ioctl(fd.get(), GG_KIOC_GRANTS, &a) == 0)
    for (uint32_t i = 0; i < a.count; i++) (void)::ioctl(fd.get(), GG_KIOC_GRANT_DEL, &g[i].grant.id);
  gg_state st{};
  if (::ioctl(fd.get(), GG_KIOC_GET_STATE, &st) == 0) {
    st.daemon_pid = 0;  // released: the next daemon starts fresh, not as a takeover
    (void)::ioctl(fd.get(), GG_KIOC_SET_STATE, &st);
  }
  return hello.instance;
}

KmodEngine::KmodEngine(KmodEngineOptions opts) : opts_(std::move(opts)) {}
KmodEngine::~KmodEngine() { stop(); }

Result<void> KmodEngine::ioctl_checked(unsigned long request, void* arg, const char* what) const {
  if (::ioctl(fd_.get(), request, arg) != 0)
    return make_error(fmt::format("gpugate.ko: {}: {}", what, std::strerror(errno)), errno);
  return {};
}

Result<gg_state> KmodEngine::read_state() const {
  gg_state st{};
  if (auto r = ioctl_checked(GG_KIOC_GET_STATE, &st, "reading its restart state"); !r) return r.error();
  return st;
}

Result<void> KmodEngine::write_state(const gg_state& st) const {
  gg_state copy = st;
  return ioctl_checked(GG_KIOC_SET_STATE, &copy, "writing its restart state");
}

Result<std::vector<HookStatus>> KmodEngine::start(const DeviceTable& devices) {
  auto m = open_module(opts_.device, true);
  if (!m) return m.error();
  fd_ = std::move(m->first);
  hello_ = m->second;
  buf_.resize(256 * 1024);
  auto st = read_state();
  if (!st) return st.error();
  if (st->version != 0 && st->version != GG_STATE_VERSION)
    return make_error(
        fmt::format("gpugate.ko keeps a restart state of version {}, this gpugated version {}: "
                    "gpugated --unload, then start again",
                    st->version, GG_STATE_VERSION));
  takeover_ = claim_restart_state(*st, true);
  if (auto w = write_state(*st); !w) return w.error();
  mode_ = opts_.mode;
  if (auto r = set_devices(devices); !r) return r.error();
  if (auto r = set_policy(opts_.policy); !r) return r.error();
  uint32_t hold = opts_.hold && mode_ == GG_MODE_ENFORCE ? 1 : 0;
  if (auto r = ioctl_checked(GG_KIOC_HOLD, &hold, hold ? "holding itself against unload" : "letting go"); !r)
    return r.error();
  held_ = hold != 0;
  return hook_rows();
}

std::vector<HookStatus> KmodEngine::hook_rows() const {
  std::vector<HookStatus> rows;
  auto fams = families();
  if (!fams) {
    rows.push_back({"kmod", false, fams.error().message});
    return rows;
  }
  for (const auto& f : *fams) {
    for (const auto& h : f.hooks) {
      std::string name = fmt::format("kmod/{}", h.symbol);
      switch (f.state) {
        case GG_KHOOK_ATTACHED:
          rows.push_back(
              {name, true,
               fmt::format("{} in {} (module {}): {}", hook_kind_name(h.kind), f.name, f.module, hook_role(h))});
          break;
        case GG_KHOOK_REFUSED:
          rows.push_back({name, false,
                          fmt::format("REFUSED for {} (module {}): {}; this driver is not gated by the module", f.name,
                                      f.module, f.why)});
          break;
        default:
          rows.push_back({name, false, fmt::format("waiting: no {} driver is loaded; attaches when it loads", f.name)});
      }
    }
  }
  return rows;
}

Result<std::vector<KmodFamily>> KmodEngine::families() const {
  std::vector<gg_kmod_hook> hooks(64);
  gg_kmod_array a{static_cast<uint32_t>(hooks.size()), 0, reinterpret_cast<uint64_t>(hooks.data())};
  if (auto r = ioctl_checked(GG_KIOC_HOOKS, &a, "listing its hooks"); !r) return r.error();
  hooks.resize(a.count);
  std::vector<KmodFamily> out;
  for (const auto& h : hooks) {
    std::string driver(h.driver, strnlen(h.driver, sizeof(h.driver)));
    auto it = std::find_if(out.begin(), out.end(), [&](const KmodFamily& f) { return f.name == driver; });
    if (it == out.end()) {
      out.push_back({driver,
                     std::string(h.module, strnlen(h.module, sizeof(h.module))),
                     h.state,
                     std::string(h.why, strnlen(h.why, sizeof(h.why))),
                     {}});
      it = out.end() - 1;
    }
    it->hooks.push_back(h);
  }
  return out;
}

uint8_t KmodEngine::owned_policy_flags() const {
  auto fams = families();
  if (!fams) return 0;
  uint8_t flags = 0;
  for (const auto& f : *fams) {
    if (f.state != GG_KHOOK_ATTACHED) continue;
    if (f.name == "nvidia") flags |= GG_POLF_KMOD_NVIDIA;
    if (f.name == "drm") flags |= GG_POLF_KMOD_DRM;
    if (f.name == "kfd") flags |= GG_POLF_KMOD_KFD;
    if (f.name == "knob") flags |= GG_POLF_KMOD_KNOB;
  }
  return flags;
}

Result<void> KmodEngine::set_devices(const DeviceTable& devices) {
  if (!fd_) return make_error("kmod engine not started");
  devices_ = &devices;
  std::vector<gg_kmod_device> d;
  for (const auto& dev : devices.devices()) d.push_back({dev.dev, 0, dev.info});
  gg_kmod_array a{static_cast<uint32_t>(d.size()), 0, reinterpret_cast<uint64_t>(d.data())};
  if (auto r = ioctl_checked(GG_KIOC_SET_DEVICES, &a, "installing the device table"); !r) return r;
  return set_knobs(devices);
}

// The GPUs' knobs and the BARs /dev/mem reaches: the same rows as the BPF
// gate's maps (gate.cpp), each table replaced whole.
Result<void> KmodEngine::set_knobs(const DeviceTable& devices) {
  std::vector<gg_kmod_knob> knobs;
  for (const auto& [key, value] : knob_rows(devices)) knobs.push_back({key, value, 0});
  gg_kmod_array a{static_cast<uint32_t>(knobs.size()), 0, reinterpret_cast<uint64_t>(knobs.data())};
  if (auto r = ioctl_checked(GG_KIOC_SET_KNOBS, &a, "installing the knob table"); !r) return r;
  auto bars = bar_rows(devices);
  gg_kmod_array b{static_cast<uint32_t>(bars.size()), 0, reinterpret_cast<uint64_t>(bars.data())};
  return ioctl_checked(GG_KIOC_SET_BARS, &b, "installing the GPUs' BAR ranges");
}

Result<void> KmodEngine::set_policy(gg_policy policy) {
  if (!fd_) return make_error("kmod engine not started");
  policy.mode = static_cast<uint8_t>(mode_);
  policy.flags &= static_cast<uint8_t>(~GG_POLF_KMOD_ALL);
  policy.fail_closed_vendors = gg_policy_fail_closed_vendors(&policy);
  if (auto r = ioctl_checked(GG_KIOC_SET_POLICY, &policy, "installing the policy"); !r) return r.error();
  policy_ = policy;
  return {};
}

Result<uint32_t> KmodEngine::install_grant(Grant grant) {
  if (!fd_) return make_error("kmod engine not started");
  if (auto c = check_grant(grant, devices_); !c) return c.error();
  auto st = read_state();
  if (!st) return st.error();
  grant.id = next_grant_id(*st, grant.id);
  if (auto w = write_state(*st); !w) return w.error();
  for (uint32_t dev : grant.devs) {
    gg_kmod_grant g{};
    g.key = grant_key(grant, dev);
    g.grant = grant_value(grant);
    g.uses = grant.uses;
    if (auto r = ioctl_checked(GG_KIOC_GRANT_ADD, &g, "installing a grant"); !r) {
      (void)revoke_grant(grant.id);
      return r.error();
    }
  }
  installed_.push_back(grant);
  return grant.id;
}

Result<void> KmodEngine::revoke_grant(uint32_t id) {
  if (!fd_) return make_error("kmod engine not started");
  std::erase_if(installed_, [&](const Grant& g) { return g.id == id; });
  if (::ioctl(fd_.get(), GG_KIOC_GRANT_DEL, &id) != 0) {
    if (errno == ENOENT) return make_error(fmt::format("no live grant with id {} (gpugate grants lists them)", id));
    return make_error(fmt::format("gpugate.ko: revoking grant {}: {}", id, std::strerror(errno)), errno);
  }
  return {};
}

Result<std::vector<Grant>> KmodEngine::grants() const {
  if (!fd_) return make_error("kmod engine not started");
  std::vector<gg_kmod_grant> g(GG_KMOD_MAX_GRANTS);
  gg_kmod_array a{static_cast<uint32_t>(g.size()), 0, reinterpret_cast<uint64_t>(g.data())};
  if (auto r = ioctl_checked(GG_KIOC_GRANTS, &a, "listing grants"); !r) return r.error();
  g.resize(a.count);
  std::vector<Grant> out;
  for (const auto& k : g) fold_grant_row(out, k.key, k.grant, k.uses);
  sort_grants(out);
  return out;
}

std::vector<std::string> KmodEngine::audit() const {
  std::vector<std::string> out;
  if (!fd_) return out;
  gg_policy kp{};
  if (::ioctl(fd_.get(), GG_KIOC_GET_POLICY, &kp) != 0)
    out.push_back(fmt::format("gpugate.ko's policy cannot be read: {}", std::strerror(errno)));
  else if (std::memcmp(&kp, &policy_, sizeof(kp)) != 0)
    out.push_back("gpugate.ko's policy differs from the policy this daemon installed");
  gg_kmod_hello h{};
  h.abi = GG_KMOD_ABI;
  if (::ioctl(fd_.get(), GG_KIOC_HELLO, &h) != 0 || h.instance != hello_.instance)
    out.push_back("gpugate.ko is not the module this daemon started with");
  else if (held_ && !h.held)
    out.push_back("gpugate.ko no longer holds itself against unload");
  auto live = grants();
  if (!live) {
    out.push_back("gpugate.ko's grants cannot be read: " + live.error().message);
  } else {
    for (const auto& g : *live) {
      auto it = std::find_if(installed_.begin(), installed_.end(), [&](const Grant& i) { return i.id == g.id; });
      if (it == installed_.end())
        out.push_back(
            fmt::format("grant {} ({}) is in gpugate.ko but this daemon never installed it", g.id, class_name(g.cls)));
      else if (it->cls != g.cls || it->not_before_ns != g.not_before_ns || it->not_after_ns != g.not_after_ns ||
               it->scope != g.scope || it->scope_id != g.scope_id || it->pkind != g.pkind ||
               it->key_index != g.key_index || it->key_value != g.key_value || g.uses > it->uses)
        out.push_back(fmt::format("grant {} in gpugate.ko differs from the one this daemon installed", g.id));
    }
  }
  return out;
}

void KmodEngine::deliver(const uint8_t* data, size_t n, EventHandler& handler) {
  size_t off = 0;
  while (off + sizeof(gg_event_hdr) <= n) {
    gg_event_hdr hdr;
    std::memcpy(&hdr, data + off, sizeof(hdr));
    if (hdr.size < sizeof(hdr) || off + hdr.size > n) {
      malformed_++;
      return;
    }
    const uint8_t* rec = data + off;
    // Records are 8-byte aligned in the buffer: the module pads none, and
    // every record size is a multiple of 8.
    if (hdr.type == GG_EV_IOCTL_ENTER && hdr.size >= sizeof(gg_ioctl_enter)) {
      gg_ioctl_enter e;
      std::memcpy(&e, rec, sizeof(e));
      handler.on_enter(e);
    } else if (hdr.type == GG_EV_IOCTL_EXIT && hdr.size >= sizeof(gg_ioctl_exit)) {
      gg_ioctl_exit x;
      std::memcpy(&x, rec, sizeof(x));
      handler.on_exit(x);
    } else if (hdr.type == GG_EV_KNOB && hdr.size >= sizeof(gg_knob_event)) {
      gg_knob_event k;
      std::memcpy(&k, rec, sizeof(k));
      handler.on_knob(k);
    } else if (hdr.type == GG_EV_KMOD_CONFIG && hdr.size >= sizeof(gg_kmod_config_event)) {
      gg_kmod_config_event c;
      std::memcpy(&c, rec, sizeof(c));
      handler.on_kmod_config(c);
    } else {
      malformed_++;
    }
    delivered_++;
    off += hdr.size;
  }
}

Result<size_t> KmodEngine::poll(std::chrono::milliseconds timeout, EventHandler& handler) {
  if (!fd_) return make_error("kmod engine not started");
  delivered_ = 0;
  backlog_ = false;
  std::chrono::steady_clock::time_point deadline{};
  for (bool waited = false;;) {
    ssize_t n = ::read(fd_.get(), buf_.data(), buf_.size());
    if (n > 0) {
      if (deadline == std::chrono::steady_clock::time_point{})
        deadline = std::chrono::steady_clock::now() + kMaxPollTime;
      deliver(buf_.data(), static_cast<size_t>(n), handler);
      // Bounds are checked per read: the rest of one read goes above them.
      if (delivered_ >= kMaxRecordsPerPoll || std::chrono::steady_clock::now() >= deadline) {
        backlog_ = true;
        break;
      }
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR)
      return make_error(fmt::format("reading gpugate.ko's records failed: {}", std::strerror(errno)), errno);
    if (delivered_ || waited || timeout.count() == 0) break;
    // Records queue without wakeups below 512 KiB: poll with the timeout.
    pollfd p{fd_.get(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(timeout.count()));
    waited = true;
  }
  return delivered_;
}

EngineStats KmodEngine::stats() const {
  EngineStats s;
  if (!fd_) return s;
  gg_kmod_stats ks{};
  if (::ioctl(fd_.get(), GG_KIOC_STATS, &ks) != 0) return s;
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++) s.per_class[c] = ks.per_class[c];
  return s;
}

EngineStats KmodEngine::acknowledged_losses() const {
  if (!fd_) return {};
  auto st = read_state();
  return st ? acknowledged_in(*st) : EngineStats{};
}

void KmodEngine::acknowledge(const EngineStats& recorded) {
  if (!fd_) return;
  auto st = read_state();
  if (!st) return;
  acknowledge_in(*st, recorded);
  (void)write_state(*st);
}

void KmodEngine::stop() { fd_.reset(); }

}  // namespace gpugate
