// From a signed request to a grant: everything the daemon checks before it
// lets a gated command through (issue 4). Pure checking; the daemon installs
// the grant in the engine and records it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gpugate/allowed_signers.hpp"
#include "gpugate/authorize.hpp"
#include "gpugate/bpf_engine.hpp"
#include "gpugate/device.hpp"
#include "gpugate/nonce_store.hpp"
#include "gpugate/policy.hpp"
#include "gpugate/request.hpp"
#include "gpugate/result.hpp"

namespace gpugate {

// Every name a watched device goes by, for matching a request's gpu field:
// its GPU index, PCI address and (NVIDIA, where the driver says) UUID.
std::vector<std::string> gpu_names(const Device& device, const std::string& proc_root = "/proc");

// The nodes a grant for gpu covers: the GPU's own nodes and, for NVIDIA, the
// control node (RM controls reach every GPU through /dev/nvidiactl).
Result<std::vector<const Device*>> grant_nodes(const DeviceTable& devices, std::string_view gpu,
                                               std::vector<std::string>* names = nullptr);

struct AcceptedRequest {
  auth::AuthRequest request;
  std::string request_text;
  auth::Authorization authorization;
  std::string group;  // the signer group that authorized ("" without groups)
  bool break_glass = false;
  Grant grant;                // devs, class, window in CLOCK_BOOTTIME, uses, cgroup, checked parameter
  std::string checked_param;  // "newLevel=5": the gate lets only commands carrying it through; "" if none
  std::vector<std::string> device_paths;
};

class GrantService {
 public:
  static Result<GrantService> open(const std::string& nonce_path, SignersConfig signers, std::string host_id,
                                   int64_t now);

  Result<auth::IssuedNonce> issue_nonce(int64_t now) { return nonces_.issue(now); }

  // Parses and checks the request (host, GPU, class, window, uses),
  // verifies the signatures against allowed_signers (read again on every
  // call, so edits apply at once) and the quorum, applies the break-glass
  // rate, and consumes the nonce last: a request that fails keeps it.
  Result<AcceptedRequest> check(std::string_view request_text, std::span<const auth::SignatureInput> signatures,
                                const DeviceTable& devices, uint64_t cgroup_id, int64_t now_unix, uint64_t now_boot_ns);

  [[nodiscard]] const SignersConfig& signers() const { return signers_; }
  [[nodiscard]] const std::string& host_id() const { return host_id_; }

 private:
  GrantService(auth::NonceStore nonces, SignersConfig signers, std::string host_id)
      : nonces_(std::move(nonces)), signers_(std::move(signers)), host_id_(std::move(host_id)) {}
  auth::NonceStore nonces_;
  SignersConfig signers_;
  std::string host_id_;
  std::vector<int64_t> break_glass_times_;  // Unix seconds of recent break-glass grants
};

}  // namespace gpugate
