// MMIO evidence on a real kernel: `gpugate mmio capture` drives mmiotrace
// while the guest's own bochs driver (drivers/gpu/drm/tiny/bochs.c) loads
// and a KMS client sets a mode on the std VGA; the DISPI register writes of
// the mode set are in the record, named by the register table, and the
// record is in gpugated's ledger with the trace's SHA-256. Run by the vm
// suite "gpusim" (both kernels have CONFIG_MMIOTRACE).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "drivers.hpp"
#include "ledger_read.hpp"
#include "process.hpp"
#include "tempdir.hpp"

using namespace gpugate::test;
namespace fs = std::filesystem;

namespace {

const std::string kBin = GG_BIN_DIR;
const std::string kVga = "0000:00:02.0";

std::string slurp_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// /modules/bochs in load order: what bochs needs, then bochs.
std::vector<fs::path> bochs_modules() {
  std::vector<fs::path> mods;
  for (const auto& e : fs::directory_iterator("/modules/bochs")) mods.push_back(e.path());
  std::sort(mods.begin(), mods.end(), [](const auto& a, const auto& b) {
    return std::stoi(a.filename().string()) < std::stoi(b.filename().string());
  });
  return mods;
}

std::string module_name(const fs::path& p) {
  std::string name = p.stem().string();
  name = name.substr(name.find('-') + 1);
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

}  // namespace

TEST(MmioCapture, TheBochsModeSetIsRecordedWithEveryDispiRegisterNamed) {
  ASSERT_FALSE(module_loaded("bochs")) << "bochs is loaded already: mmiotrace sees only mappings made while it runs";
  auto mods = bochs_modules();
  ASSERT_FALSE(mods.empty()) << "tools/vmtest packed no /modules/bochs";
  ASSERT_EQ(module_name(mods.back()), "bochs");
  // What bochs needs, loaded before the capture; fbdev emulation off, so
  // that no console is drawn through the traced framebuffer (the mode set
  // comes from the KMS client instead).
  for (size_t i = 0; i + 1 < mods.size(); i++) {
    std::string name = module_name(mods[i]);
    if (module_loaded(name)) continue;
    std::string args = name == "drm_kms_helper" ? " fbdev_emulation=0" : "";
    ASSERT_EQ(std::system(("insmod " + mods[i].string() + args).c_str()), 0) << mods[i];
  }
  const std::string fbdev = "/sys/module/drm_kms_helper/parameters/fbdev_emulation";
  ASSERT_TRUE(fs::exists(fbdev)) << "this kernel's drm_kms_helper has no fbdev_emulation parameter";
  std::ofstream(fbdev) << "0";

  TempDir dir;
  std::string ledger = dir.path / "ledger", status = dir.path / "status.json", sock = dir.path / "control.sock";
  pid_t daemon = spawn({kBin + "/gpugated", "--ledger", ledger, "--status-file", status, "--state-dir", dir.path,
                        "--mode", "observe", "--no-pin", "--kmod", "off", "--control-socket", sock},
                       dir.path / "daemon.out");
  for (int i = 0; i < 600 && slurp(status).find("\"running\"") == std::string::npos; i++) usleep(50'000);
  ASSERT_NE(slurp(status).find("\"running\""), std::string::npos) << slurp(dir.path / "daemon.out");

  // The traced command: load bochs (its probe maps BAR 2), then one mode set.
  std::string script = dir.path / "load-and-set.sh";
  std::ofstream(script) << "insmod " << mods.back().string() << " || exit 1\n"
                        << "for i in $(seq 100); do ls /sys/bus/pci/devices/" << kVga
                        << "/drm 2>/dev/null | grep -q ^card && break; sleep 0.1; done\n"
                        << "card=$(ls /sys/bus/pci/devices/" << kVga << "/drm | grep ^card | head -1)\n"
                        << "exec " << kBin << "/gpugate-kmsclient /dev/dri/$card 640 480\n";
  std::string trace = dir.path / "trace.txt";
  const std::string cpus_before = slurp("/sys/devices/system/cpu/online");
  auto r =
      run_shell(kBin + "/gpugate mmio capture --socket " + sock + " --trace-out " + trace + " --json -- sh " + script);
  ASSERT_EQ(r.status, 0) << r.output;
  // mmiotrace took every CPU but one down: all of them are back
  EXPECT_EQ(slurp("/sys/devices/system/cpu/online"), cpus_before) << r.output;
  std::printf("GG-MMIO capture said: %s\n", r.output.substr(0, r.output.find("{\n")).c_str());
  auto json_start = r.output.find("{\n");
  ASSERT_NE(json_start, std::string::npos) << r.output;
  auto cap = nlohmann::json::parse(r.output.substr(json_start), nullptr, false);
  ASSERT_FALSE(cap.is_discarded()) << r.output;
  EXPECT_EQ(cap["trace_version"], "20070824");
  EXPECT_EQ(cap["lost_events"], 0);
  EXPECT_GT(cap["maps_on_gpus"].get<int>(), 0) << "bochs's ioremap of its BARs";
  // The mode set's writes, in order, to the std VGA's BAR 2 (bochs_hw_setmode).
  std::map<std::string, std::vector<std::string>> values;
  for (const auto& w : cap["named_writes_kept"])
    if (w["gpu"] == kVga && w["bar"] == 2 && w["register"].is_string()) values[w["register"]].push_back(w["value"]);
  auto has = [&](const std::string& reg, const std::string& value) {
    const auto& v = values[reg];
    return std::find(v.begin(), v.end(), value) != v.end();
  };
  EXPECT_TRUE(has("VBE_DISPI_INDEX_XRES", "0x280")) << cap["named_writes_kept"].dump(1);
  EXPECT_EQ(cap["named_writes_cut"], false);
  EXPECT_TRUE(has("VBE_DISPI_INDEX_YRES", "0x1e0"));
  EXPECT_TRUE(has("VBE_DISPI_INDEX_BPP", "0x20"));
  EXPECT_TRUE(has("VBE_DISPI_INDEX_ENABLE", "0x0")) << "disabled for the change";
  EXPECT_TRUE(has("VBE_DISPI_INDEX_ENABLE", "0x41")) << "enabled with the linear framebuffer";
  EXPECT_GT(cap["named_writes"].get<int>(), 8);

  kill(daemon, SIGTERM);
  EXPECT_EQ(wait_exit(daemon), 0) << slurp(dir.path / "daemon.out");
  auto recs = ledger_records(ledger, "mmio.capture");
  ASSERT_EQ(recs.size(), 1u) << ledger_text(ledger);
  EXPECT_EQ(recs[0]["reported_by"]["uid"], 0);
  EXPECT_EQ(recs[0]["gpu_writes"], cap["gpu_writes"]);
  EXPECT_EQ(recs[0]["trace_bytes"].get<size_t>(), slurp_file(trace).size());
  auto sum = run_shell("sha256sum " + trace);
  EXPECT_EQ(sum.output.substr(0, 64), recs[0]["trace_sha256"]) << "the record names the saved trace";
  auto verify = run_shell(kBin + "/gpugate log verify " + ledger);
  EXPECT_EQ(verify.status, 0) << verify.output;
  // offline, the saved trace classifies the same
  auto again = run_shell(kBin + "/gpugate mmio classify --json " + trace);
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_EQ(nlohmann::json::parse(again.output)["named_writes"], cap["named_writes"]);
  EXPECT_EQ(std::system("rmmod bochs"), 0);
}
