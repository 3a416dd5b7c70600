// libFuzzer target for the control protocol: arbitrary bytes as one request
// line, through the JSON parsing, the type checks of every member and the
// handler of each op (nonce, submit with its request and signature parsers,
// grants, revoke, ping), against an in-memory grant store and record, so no
// kernel and no socket are needed.
//
// What must hold:
//  - nothing throws out of ControlService::answer, and nothing crashes;
//  - every answer is an object with a boolean "ok", and a refusal has a
//    non-empty "error" string; its text is one line of valid JSON;
//  - no grant is ever installed: nobody can forge a signature by fuzzing.
//
// Build and run with `make fuzz` (GPUGATE_FUZZ=ON), or by hand from the
// repository root (clang; the sources the handler needs, no kernel parts):
//   for c in userspace/lib/decode/gg_decode_c.c kmod/common/gg_tables.c; do
//     clang -g -O1 -fsanitize=fuzzer-no-link,address,undefined -Iuserspace/include -Ikmod/uapi -Ikmod/common \
//       -c $c -o /tmp/$(basename $c .c).o; done
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iuserspace/include -Ikmod/uapi \
//     -Ikmod/common -Iuserspace/lib/decode -Iuserspace/lib/auth tests/fuzz/control_fuzz.cpp \
//     userspace/lib/control/{control_service,grant_service,control}.cpp \
//     userspace/lib/auth/{wire,request,sshsig,allowed_signers,authorize,nonce_store}.cpp \
//     userspace/lib/{policy/policy,device/device,decode/names,util/base64}.cpp \
//     /tmp/gg_decode_c.o /tmp/gg_tables.o -lfmt -lcrypto -o /tmp/control_fuzz
//   mkdir -p /tmp/control-corpus && printf '\0{"op":"ping"}' > /tmp/control-corpus/ping
//   /tmp/control_fuzz -max_len=65536 -dict=tests/fuzz/control.dict /tmp/control-corpus
//
// The first input byte picks how the rest is used: 0-3 as the request line
// itself, 4 as a submit's request text, 5 as a submit's signature, 6 as a
// revoke's id, 7 as a member name.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "gpugate/control_service.hpp"
#include "gpugate/request.hpp"

using namespace gpugate;

namespace {

constexpr int64_t kNow = 1795858800;
constexpr uint64_t kBootNs = 5'000'000'000ull;
constexpr const char* kHost = "3d1219c7c4c5404aaa1f6d2a48adfda4";
// A key nobody holds the private half of any more: it makes allowed_signers
// non-empty, so every signature check runs to the end.
constexpr const char* kAllowed =
    "alice@example.org namespaces=\"gpugate-request@gpugate.dev\" ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIHVw8X1n53lZb9+m2QE/xPN3yFUe8RKtFMOq4PWhUKT/\n";

class MemoryStore final : public GrantStore {
 public:
  Result<uint32_t> install(const Grant& g) override {
    grants.push_back(g);
    grants.back().id = static_cast<uint32_t>(grants.size());
    return grants.back().id;
  }
  Result<void> revoke(uint32_t id) override {
    if (!std::erase_if(grants, [&](const Grant& g) { return g.id == id; })) return make_error("no such grant");
    return {};
  }
  Result<std::vector<Grant>> list() const override { return grants; }
  std::vector<Grant> grants;
};

class CountingSink final : public EventSink {
 public:
  void record(const std::string&, nlohmann::ordered_json body) override {
    bytes += body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).size();
  }
  size_t bytes = 0;
};

struct World {
  std::filesystem::path dir;
  DeviceTable devices;
  MemoryStore store;
  CountingSink sink;
  std::optional<ControlService> service;
  std::string nonce;  // one issued nonce, so that requests can name a real one
};

std::string g_dir;  // removed at exit

World& world() {
  static World* w = [] {
    auto* out = new World;
    const char* base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string tmpl = std::string(base) + "/gpugate-control-fuzz-XXXXXX";
    if (!mkdtemp(tmpl.data())) __builtin_trap();
    out->dir = g_dir = tmpl;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(g_dir, ec);
    });
    std::ofstream(out->dir / "allowed_signers") << kAllowed;
    Device gpu;
    gpu.path = "/dev/nvidia0";
    gpu.dev = kernel_dev(195, 0);
    gpu.info.kind = GG_DEV_NVIDIA_GPU;
    gpu.info.vendor = GG_VENDOR_NVIDIA;
    gpu.info.gpu_index = 0;
    out->devices.add(gpu);
    Device ctl = gpu;
    ctl.path = "/dev/nvidiactl";
    ctl.dev = kernel_dev(195, 255);
    ctl.info.kind = GG_DEV_NVIDIA_CTL;
    ctl.info.gpu_index = -1;
    out->devices.add(ctl);
    SignersConfig signers;
    signers.allowed_signers = (out->dir / "allowed_signers").string();
    signers.groups = {{"oncall", {"alice@example.org", "bob@example.org"}, 1, false},
                      {"thermal", {"thermal@example.org"}, 1, true}};
    GrantServiceOptions options;
    options.nonces.max_outstanding = 1u << 20;  // a long run issues many
    options.cgroups = [](const std::string& path) -> Result<uint64_t> {
      if (path == "/gpugate-exec/x" || path == "/system.slice/train.service") return uint64_t{4242};
      return make_error("no such cgroup (the fuzzer's tree)");
    };
    auto grants = GrantService::open((out->dir / "nonces").string(), signers, kHost, kNow, options);
    if (!grants) __builtin_trap();
    out->service.emplace(std::move(*grants));
    out->nonce = out->service->grants().issue_nonce(kNow)->nonce;
    return out;
  }();
  return *w;
}

std::string request_text(const std::string& nonce) {
  return "gpugate-request v1\nhost: " + std::string(kHost) +
         "\ngpu: 0\nclass: power.off\nparam: uses=2\nscope: cgroup=/gpugate-exec/x\n"
         "not-before: 2026-11-28T09:39:00Z\nnot-after: 2026-11-28T09:50:00Z\nnonce: " +
         nonce + "\nrequester: alice@example.org\nreason: fuzz\n";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  World& w = world();
  std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  auto as_json_string = [](const std::string& s) {
    return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  std::string line;
  switch (data[0] % 8) {
    case 4:
      line = R"({"op":"submit","request":)" + as_json_string(rest) + R"(,"signatures":[{"label":"a","armored":"x"}]})";
      break;
    case 5:
      line = R"({"op":"submit","request":)" + as_json_string(request_text(w.nonce)) +
             R"(,"signatures":[{"label":"a","armored":)" + as_json_string(rest) + "}]}";
      break;
    case 6: line = R"({"op":"revoke","id":)" + rest + "}"; break;
    case 7: line = R"({"op":"submit","request":"","signatures":[],)" + as_json_string(rest) + ":1}"; break;
    default: line = rest; break;
  }
  ControlContext ctx{w.devices, &w.store, w.sink, kNow, kBootNs, {}, {}};
  ControlPeer peer{1, 0, 0};
  auto answer = w.service->answer(peer, line, ctx);
  if (!answer.is_object() || !answer.contains("ok") || !answer["ok"].is_boolean()) __builtin_trap();
  if (answer["ok"] == false &&
      (!answer.contains("error") || !answer["error"].is_string() || answer["error"].get<std::string>().empty()))
    __builtin_trap();
  std::string text = control_answer_text(answer);
  if (text.empty() || text.find('\n') != std::string::npos) __builtin_trap();
  if (nlohmann::json::parse(text, nullptr, false).is_discarded()) __builtin_trap();
  if (!w.store.grants.empty()) __builtin_trap();  // a grant without a real signature
  if (data[0] % 8 == 0) w.service->expire(ctx);
  return 0;
}
