// The kernel's view of each GPU: the PCI function (present, D-state, link)
// and the knobs that read back what was set (hwmon caps, amdgpu and Intel
// levels and frequencies, NVIDIA's procfs files); and the test-only
// simulated driver's state.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gpugate/unique_fd.hpp"
#include "gpugate/watch.hpp"

namespace gpugate::watch {
namespace {

// A short attribute's value, trimmed; nullopt where it cannot be read. Reads
// never block and never follow a FIFO: O_NONBLOCK, and at most 4 KiB.
std::optional<std::string> read_value(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!fd) return std::nullopt;
  char buf[4096];
  ssize_t n = ::read(fd.get(), buf, sizeof(buf) - 1);
  if (n < 0) return std::nullopt;
  std::string v(buf, static_cast<size_t>(n));
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ' || v.back() == '\0')) v.pop_back();
  return v;
}

Json number_or_text(const std::string& v) {
  if (!v.empty() && v.size() < 20 && v.find_first_not_of("0123456789") == std::string::npos) return std::stoull(v);
  return v;
}

class SysfsSource final : public StateSource {
 public:
  SysfsSource(std::vector<PciGpu> gpus, std::string sys) : gpus_(std::move(gpus)), sys_(std::move(sys)) {}
  [[nodiscard]] std::string name() const override { return "sysfs"; }

  std::vector<GpuSample> sample() override {
    std::vector<GpuSample> out;
    for (const auto& g : gpus_) {
      GpuSample s;
      s.pci = g.address;
      s.uuid = g.uuid;
      s.source = "sysfs";
      std::string dir = sys_ + "/bus/pci/devices/" + g.address;
      bool present = ::access(dir.c_str(), F_OK) == 0;
      s.values["pci.present"] = present;
      if (present) {
        if (auto v = read_value(dir + "/power_state")) s.values["pci.power_state"] = *v;
        if (auto v = read_value(dir + "/current_link_width")) s.values["pci.link_width"] = number_or_text(*v);
        if (auto v = read_value(dir + "/current_link_speed")) s.values["pci.link_speed"] = *v;
        if (auto v = read_value(dir + "/power/runtime_status")) s.values["pci.runtime_status"] = *v;
        for (const auto& k : g.knobs) {
          if (k.owner != "gpu" && k.owner != "nvidia-proc") continue;
          if (k.mappable || !sampled_knob_class(k.name)) continue;
          if (auto v = read_value(k.path)) s.values["sysfs:" + k.name] = number_or_text(*v);
        }
      }
      out.push_back(std::move(s));
    }
    return out;
  }

 private:
  std::vector<PciGpu> gpus_;
  std::string sys_;
};

class GpusimSource final : public StateSource {
 public:
  GpusimSource(std::string state, std::string pci) : state_(std::move(state)), pci_(std::move(pci)) {}
  [[nodiscard]] std::string name() const override { return "gpusim"; }

  std::vector<GpuSample> sample() override {
    GpuSample s;
    s.pci = pci_;
    s.source = "gpusim";
    auto text = read_value(state_);
    if (!text) return {};
    std::istringstream in(*text);
    std::string key, value;
    while (in >> key >> value) {
      if (key == "powered")
        s.values["power.on"] = value == "1";
      else if (key == "power_level")
        s.values["power.level"] = number_or_text(value);
      else if (key == "power_limit_mw")
        s.values["power.limit_mw"] = number_or_text(value);
      else if (key == "perf_state")
        s.values["perf.forced_state"] = number_or_text(value);
      else if (key == "ecc_pending")
        s.values["ecc.pending"] = value == "1" ? "enabled" : "disabled";
      else if (key == "mig_pending")
        s.values["mig.pending"] = value == "1" ? "enabled" : "disabled";
      else if (key == "sm_clock_mhz")
        s.values["clocks.sm_mhz"] = number_or_text(value);
      else if (key == "sm_clock_max_mhz")
        s.values["clocks.sm_max_mhz"] = number_or_text(value);
      else if (key == "clock_event_reasons")
        s.values["clocks.event_reasons"] = clock_event_reason_names(std::strtoull(value.c_str(), nullptr, 10));
    }
    return {std::move(s)};
  }

 private:
  std::string state_, pci_;
};

}  // namespace

std::unique_ptr<StateSource> open_sysfs(std::vector<PciGpu> gpus, std::string sys_root) {
  return std::make_unique<SysfsSource>(std::move(gpus), std::move(sys_root));
}

std::unique_ptr<StateSource> open_gpusim(const std::string& sys_root) {
  std::string state = sys_root + "/class/gpusim/nvidiactl/state";
  auto pci = read_value(sys_root + "/module/gpusim/parameters/pci");
  if (::access(state.c_str(), R_OK) != 0 || !pci) return nullptr;
  return std::make_unique<GpusimSource>(state, *pci);
}

}  // namespace gpugate::watch
