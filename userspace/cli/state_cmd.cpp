#include "state_cmd.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include "gpugate/hostinfo.hpp"
#include "gpugate/paths.hpp"
#include "gpugate/pci.hpp"
#include "gpugate/watch.hpp"

namespace gpugate::cli {
namespace {

struct StateArgs {
  uint64_t interval_ms = 1000;
  double duration = 0;
  uint64_t count = 1;
  uint64_t window_ms = 10000;
  bool json = false;
  std::string ledger;
  std::string nvml_library = "libnvidia-ml.so.1";
  std::string state_dir = paths::kStateDir;
};

std::string value_text(const watch::Json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

void print_human(const std::string& type, const watch::Json& body) {
  std::string pci = body["gpu"].value("pci", std::string());
  if (type == "state.sample" && body.value("reason", std::string()) == "start") {
    std::printf("GPU %s (%s)\n", pci.c_str(), body.value("source", std::string()).c_str());
    for (const auto& [name, v] : body["values"].items()) {
      auto spec = watch::field_spec(name);
      const char* kind = !spec                                       ? ""
                         : spec->kind == watch::FieldKind::Telemetry ? "telemetry"
                         : spec->kind == watch::FieldKind::Throttle  ? "throttle"
                         : spec->kind == watch::FieldKind::Presence  ? "presence"
                                                                     : "setting";
      std::printf("  %-36s %-24s %s\n", name.c_str(), value_text(v).c_str(), kind);
    }
    return;
  }
  if (type == "state.sample") {
    std::printf("%s %s: %s changed\n", type.c_str(), pci.c_str(), body["changed"].dump().c_str());
    return;
  }
  std::string by = type == "state.explained" ? body["explained_by"].value("kind", std::string()) : "NOTHING";
  std::printf("%s %s: %s %s -> %s, explained by %s\n", type == "state.unexplained" ? "UNEXPLAINED" : "explained",
              pci.c_str(), body.value("field", std::string()).c_str(), value_text(body["before"]).c_str(),
              value_text(body["after"]).c_str(), by.c_str());
}

int run_state(const StateArgs& a) {
  std::vector<std::unique_ptr<watch::StateSource>> sources;
  auto nvml = watch::open_nvml(a.nvml_library);
  if (nvml)
    sources.push_back(std::move(*nvml));
  else
    std::fprintf(stderr, "gpugate state: %s\n", nvml.error().message.c_str());
  DeviceTable devices = discover_devices_and_gpus();
  sources.push_back(watch::open_sysfs(devices.gpus()));
  if (auto sim = watch::open_gpusim()) sources.push_back(std::move(sim));
  watch::WatchOptions wo;
  wo.interval_ms = a.interval_ms;
  wo.window_ms = a.window_ms;
  wo.settle_ms = 0;
  wo.boot_id = HostInfo::load(a.state_dir).boot_id;
  watch::Watcher w(wo, std::move(sources), devices.gpus());
  if (!a.ledger.empty()) w.seed(watch::ledger_tail(a.ledger));
  uint64_t seq = 0;
  watch::RecordFn record = [&](const std::string& type, watch::Json body) {
    if (a.json) {
      watch::Json line{{"type", type}, {"boottime_ns", boottime_ns()}};
      for (auto& [k, v] : body.items()) line[k] = std::move(v);
      std::printf("%s\n", line.dump().c_str());
    } else {
      print_human(type, body);
    }
    std::fflush(stdout);
    return seq++;
  };
  uint64_t rounds =
      a.duration > 0 ? static_cast<uint64_t>(a.duration * 1000 / static_cast<double>(a.interval_ms)) : a.count;
  if (rounds == 0) rounds = 1;
  for (uint64_t i = 0; i < rounds; i++) {
    if (i) std::this_thread::sleep_for(std::chrono::milliseconds(a.interval_ms));
    w.sample_now();
    w.poll(boottime_ns(), record);
  }
  w.poll(UINT64_MAX, record);
  if (w.samples() && devices.gpus().empty() && !nvml) std::fprintf(stderr, "gpugate state: no GPU found here\n");
  return 0;
}

}  // namespace

std::function<std::optional<int>()> add_state_command(CLI::App& app) {
  auto args = std::make_shared<StateArgs>();
  auto* cmd = app.add_subcommand(
      "state",
      "Sample every GPU's state as gpugated's watcher does (NVML where NVIDIA's driver is, sysfs for every GPU): "
      "power limits, clocks, throttle (clock-event) reasons, pstate, ECC, MIG, persistence, compute mode, PCIe "
      "link and PCI power state. Once, it prints each GPU's fields; over --count rounds or --duration it prints "
      "what changed and whether anything explains it. Without --ledger nothing can explain a change: every "
      "change of a judged field is shown as unexplained. docs/watch.md");
  cmd->add_option("--interval-ms", args->interval_ms, "Time between rounds")
      ->capture_default_str()
      ->check(CLI::Range(10, 3600000));
  cmd->add_option("--count", args->count, "Rounds to take")->capture_default_str();
  cmd->add_option("--duration", args->duration, "Sample for this many seconds (overrides --count)");
  cmd->add_option("--window-ms", args->window_ms, "How long before a change a command may have caused it")
      ->capture_default_str();
  cmd->add_option("--ledger", args->ledger,
                  "Match changes against the commands and grants in this ledger's newest 4 MiB");
  cmd->add_option("--nvml-library", args->nvml_library, "The NVML library to open")->capture_default_str();
  cmd->add_option("--state-dir", args->state_dir, "Where gpugated keeps the host id (for the boot id)")
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "One JSON line per record: state.sample, state.explained, state.unexplained");
  return [cmd, args]() -> std::optional<int> {
    if (!*cmd) return std::nullopt;
    return run_state(*args);
  };
}

}  // namespace gpugate::cli
