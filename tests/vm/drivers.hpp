// Real drivers of the guest's own kernel. tools/vmtest packs each with the
// modules it needs, numbered in load order: /modules/drm (vgem) and
// /modules/amd (amdgpu, which creates /dev/kfd at load with no AMD GPU).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace gpugate::test {

inline bool module_loaded(const std::string& name) {
  std::ifstream proc("/proc/modules");
  std::string all((std::istreambuf_iterator<char>(proc)), std::istreambuf_iterator<char>());
  return all.rfind(name + " ", 0) == 0 || all.find("\n" + name + " ") != std::string::npos;
}

// Loads the modules of a folder in order (those an earlier test left loaded
// stay), waits for the node the driver makes, and unloads the driver (not
// what it needs) when done.
struct GuestDriver {
  GuestDriver(const std::string& dir, std::string module, const std::string& node) : module(std::move(module)) {
    std::vector<std::filesystem::path> mods;
    for (const auto& e : std::filesystem::directory_iterator(dir)) mods.push_back(e.path());
    std::sort(mods.begin(), mods.end(), [](const auto& a, const auto& b) {
      return std::stoi(a.filename().string()) < std::stoi(b.filename().string());
    });
    for (const auto& m : mods) {
      // "03-drm_kms_helper.ko" -> "drm_kms_helper"
      std::string name = m.stem().string();
      name = name.substr(name.find('-') + 1);
      std::replace(name.begin(), name.end(), '-', '_');
      if (module_loaded(name)) continue;
      if (std::system(("insmod " + m.string()).c_str()) != 0) {
        error = "insmod " + m.string() + " failed";
        return;
      }
    }
    using namespace std::chrono_literals;
    for (int i = 0; i < 500 && !std::filesystem::exists(node); i++) std::this_thread::sleep_for(20ms);
    if (!std::filesystem::exists(node)) {
      error = "loading " + dir + " made no " + node;
      return;
    }
    loaded = true;
  }
  ~GuestDriver() { (void)unload(); }
  GuestDriver(const GuestDriver&) = delete;
  GuestDriver& operator=(const GuestDriver&) = delete;
  bool unload() {
    if (!module_loaded(module)) return true;
    return std::system(("rmmod " + module).c_str()) == 0;
  }
  std::string module;
  bool loaded = false;
  std::string error;
};

}  // namespace gpugate::test
