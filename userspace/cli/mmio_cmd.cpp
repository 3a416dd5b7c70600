// `gpugate mmio`: MMIO evidence from the kernel's mmiotrace (docs/mmio.md).
//   capture   trace a driver load (-- COMMAND) or a window (--seconds N),
//             classify the GPU register writes, record them in gpugated's
//             ledger (mmio.capture), print a summary;
//   classify  the same classification of a trace saved earlier (offline).
#include "mmio_cmd.hpp"

#include <cstdio>
#include <fstream>

#include <fmt/format.h>

#include "gpugate/control.hpp"
#include "gpugate/decode.hpp"
#include "gpugate/file.hpp"
#include "gpugate/hex.hpp"
#include "gpugate/merkle.hpp"
#include "gpugate/mmio.hpp"
#include "gpugate/paths.hpp"
#include "gpugate/pci.hpp"

namespace gpugate::cli {
namespace {

constexpr const char* kLimits =
    "mmiotrace traces the MMIO of mappings a driver makes with ioremap after the trace starts, in the kernel; "
    "writes through a BAR a process mapped itself (resourceN, /dev/mem) are not traced (the knob gate refuses such "
    "mappings), nor are port I/O, config space, or mappings made before the capture began";

struct MmioArgs {
  std::vector<std::string> command;
  unsigned seconds = 0;
  std::string tracefs;
  std::string socket = paths::kControlSocket;
  std::string trace_out;
  std::string file;
  bool no_record = false;
  bool json = false;
  size_t keep = 2048;
};

void print_summary(const mmio::Capture& c, std::FILE* out) {
  std::fprintf(out,
               "%llu trace lines: %llu mappings (%llu of GPU BARs), %llu writes (%llu to GPU BARs, %llu to named "
               "registers), %llu reads\n",
               static_cast<unsigned long long>(c.lines), static_cast<unsigned long long>(c.maps),
               static_cast<unsigned long long>(c.maps_on_gpus), static_cast<unsigned long long>(c.writes),
               static_cast<unsigned long long>(c.gpu_writes), static_cast<unsigned long long>(c.named_writes),
               static_cast<unsigned long long>(c.reads));
  if (c.lost)
    std::fprintf(out, "the kernel lost %llu events: the trace is incomplete\n",
                 static_cast<unsigned long long>(c.lost));
  if (c.malformed) std::fprintf(out, "%llu lines were not mmiotrace's\n", static_cast<unsigned long long>(c.malformed));
  for (const auto& [key, count] : c.by_register) {
    const auto& [gpu, bar, name, cls] = key;
    std::fprintf(out, "  %s BAR %u  %-36s %-12s %llu writes\n", gpu.c_str(), bar,
                 name.empty() ? "(no name in the register table)" : name.c_str(), std::string(class_name(cls)).c_str(),
                 static_cast<unsigned long long>(count));
  }
}

int classify_file(const MmioArgs& a) {
  auto text = read_file(a.file, 1ull << 30);
  if (!text) {
    std::fprintf(stderr, "gpugate mmio classify: %s\n", text.error().message.c_str());
    return 2;
  }
  auto devices = discover_devices_and_gpus();
  auto c = mmio::classify(*text, devices.gpus(), a.keep);
  if (a.json) {
    std::printf("%s\n", mmio::capture_json(c).dump(2).c_str());
  } else {
    print_summary(c, stdout);
  }
  if (c.lines && c.malformed == c.lines) {
    std::fprintf(stderr,
                 "gpugate mmio classify: %s: no line is mmiotrace output (a trace_pipe capture while the "
                 "tracer was mmiotrace)\n",
                 a.file.c_str());
    return 2;
  }
  return 0;
}

int capture(const MmioArgs& a) {
  if (a.command.empty() && a.seconds == 0) {
    std::fprintf(stderr,
                 "gpugate mmio capture: say what to trace: -- COMMAND ARGS... (a driver load) or --seconds N\n");
    return 2;
  }
  // discovery first: the GPUs' BARs as they are before the driver loads
  auto devices = discover_devices_and_gpus();
  mmio::CaptureOptions o;
  o.tracefs = a.tracefs;
  o.command = a.command;
  o.seconds = a.seconds;
  auto trace = mmio::capture_trace(o);
  if (!trace) {
    std::fprintf(stderr, "gpugate mmio capture: %s\n", trace.error().message.c_str());
    return 1;
  }
  if (!a.trace_out.empty()) {
    std::ofstream f(a.trace_out, std::ios::binary);
    f << trace->text;
    if (!f) std::fprintf(stderr, "gpugate mmio capture: cannot write %s\n", a.trace_out.c_str());
  }
  auto c = mmio::classify(trace->text, devices.gpus(), a.keep);
  auto record = mmio::capture_json(c);
  merkle::Hasher h;
  auto digest = h.sha256(trace->text);
  record["trace_sha256"] = to_hex(std::span<const uint8_t>(digest.data(), digest.size()));
  record["trace_bytes"] = trace->text.size();
  record["command"] = a.command.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(a.command);
  record["command_status"] =
      a.command.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(trace->command_status);
  record["seconds"] = a.command.empty() ? nlohmann::ordered_json(a.seconds) : nlohmann::ordered_json(nullptr);
  record["limits"] = kLimits;
  int rc = 0;
  if (!a.no_record) {
    nlohmann::json req{
        {"op", "mmio"},
        {"capture", nlohmann::json::parse(record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))}};
    auto ans = control_call(a.socket, req);
    if (!ans) {
      std::fprintf(stderr, "gpugate mmio capture: not recorded: %s (--no-record to only print)\n",
                   ans.error().message.c_str());
      rc = 3;
    } else if (!ans->value("ok", false)) {
      std::fprintf(stderr, "gpugate mmio capture: gpugated refused the record: %s\n",
                   ans->value("error", std::string("(no reason)")).c_str());
      rc = 1;
    } else {
      std::fprintf(stderr, "gpugate mmio capture: recorded in gpugated's ledger (mmio.capture)\n");
    }
  }
  if (a.json)
    std::printf("%s\n", record.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  else
    print_summary(c, stdout);
  if (!a.command.empty() && trace->command_status != 0) {
    std::fprintf(stderr, "gpugate mmio capture: %s exited with %d\n", a.command[0].c_str(), trace->command_status);
    if (!rc) rc = 1;
  }
  return rc;
}

}  // namespace

std::function<std::optional<int>()> add_mmio_command(CLI::App& app) {
  auto args = std::make_shared<MmioArgs>();
  auto* mmio = app.add_subcommand("mmio",
                                  "MMIO evidence: trace a driver's register writes with the kernel's mmiotrace and "
                                  "record them, classified by a register table (docs/mmio.md)");
  mmio->require_subcommand(1);
  auto* cap = mmio->add_subcommand(
      "capture",
      "Trace the MMIO of a driver load (-- COMMAND ARGS..., e.g. -- modprobe nvidia) or of --seconds N, classify "
      "each write to a GPU's BAR by the register table, record it in gpugated's ledger (mmio.capture) and print a "
      "summary. Needs root and a kernel with CONFIG_MMIOTRACE. While tracing, the kernel keeps one CPU online. "
      "Only mappings made after the capture starts are traced: load the driver inside it.");
  cap->add_option("--seconds", args->seconds, "Trace for this long instead of running a command");
  cap->add_option("--tracefs", args->tracefs, "tracefs directory (default: found, or mounted at /sys/kernel/tracing)");
  cap->add_option("--socket", args->socket, "gpugated's control socket")->capture_default_str();
  cap->add_option("--trace-out", args->trace_out, "Also save the raw trace here (its SHA-256 is in the record)");
  cap->add_option("--keep", args->keep,
                  "Writes to named registers listed one by one in the record (and an eighth as many others; the rest "
                  "are counted)")
      ->capture_default_str();
  cap->add_flag("--no-record", args->no_record, "Print only; do not send the capture to gpugated");
  cap->add_flag("--json", args->json, "Print the record as JSON");
  cap->add_option("COMMAND", args->command, "The command to trace (after --)");
  auto* cls = mmio->add_subcommand("classify", "Classify a saved mmiotrace (e.g. --trace-out's file) offline");
  cls->add_option("FILE", args->file, "The trace")->required();
  cls->add_option("--keep", args->keep, "Writes to named registers listed one by one")->capture_default_str();
  cls->add_flag("--json", args->json, "JSON: the mmio.capture record's fields");
  return [args, cap, cls]() -> std::optional<int> {
    if (*cap) return capture(*args);
    if (*cls) return classify_file(*args);
    return std::nullopt;
  };
}

}  // namespace gpugate::cli
