// From a signed request to a grant: everything the daemon checks before it
// lets a gated command through. Pure checking; the daemon installs the grant
// in the engine and records it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gpugate/allowed_signers.hpp"
#include "gpugate/authorize.hpp"
#include "gpugate/device.hpp"
#include "gpugate/gate.hpp"
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

// A Unix time (seconds) as CLOCK_BOOTTIME nanoseconds, given one moment on
// both clocks. Saturates: a time before the boot is 0, one beyond what
// 64 bits hold is UINT64_MAX; never overflows.
uint64_t unix_to_boot_ns(int64_t unix_s, int64_t now_unix_s, uint64_t now_boot_ns);

// The cgroup v2 id (the directory's inode number) of a cgroup path from the
// root of the hierarchy, or why there is none. The daemon's resolver reads
// /sys/fs/cgroup; tests and the fuzzer inject their own.
using CgroupResolver = std::function<Result<uint64_t>(const std::string& path)>;
Result<uint64_t> resolve_cgroup(const std::string& path, const std::string& root = "/sys/fs/cgroup");

struct AcceptedRequest {
  auth::AuthRequest request;
  std::string request_text;
  auth::Authorization authorization;
  std::string group;  // the signer group that authorized ("" without groups)
  bool break_glass = false;
  Grant grant;                // devs, class, window in CLOCK_BOOTTIME, uses, scope, checked parameter
  std::string checked_param;  // "newLevel=5": the gate lets only commands carrying it through; "" if none
  std::vector<std::string> device_paths;
  std::string scope;       // the signed scope text, "cgroup=/gpugate-exec/..."
  std::string scope_path;  // the cgroup it was resolved from ("" for any and uid)
};

// What GrantService::check decided. A request "verified" once it parsed and
// its signatures met the quorum against the allowed_signers file read at that
// moment; from then on the decision is final and the nonce is consumed,
// whether the request is then refused (a cap, the break-glass rate, a GPU
// that is not there, a cgroup that does not exist, ...) or accepted. A
// request refused before that keeps its nonce.
struct GrantDecision {
  std::optional<AcceptedRequest> accepted;
  std::string error;          // why it was refused; empty when accepted
  std::string nonce;          // the request's nonce, where it parsed
  bool verified = false;      // signatures and quorum held
  bool nonce_burned = false;  // this decision consumed the nonce (accepted requests too)

  [[nodiscard]] bool ok() const { return accepted.has_value(); }
};

struct GrantServiceOptions {
  auth::NonceStoreOptions nonces;
  CgroupResolver cgroups;  // empty: resolve_cgroup under /sys/fs/cgroup
};

class GrantService {
 public:
  // Opens the nonce store and reads allowed_signers once, so that a bad
  // line is an error at start (file:line and the fix), not a refusal of
  // every later request.
  static Result<GrantService> open(const std::string& nonce_path, SignersConfig signers, std::string host_id,
                                   int64_t now, const GrantServiceOptions& options = {});

  Result<auth::IssuedNonce> issue_nonce(int64_t now) { return nonces_.issue(now); }

  // Parses the request, verifies the signatures against allowed_signers
  // (read again on every call, so edits apply at once) and the quorum, then
  // checks host, GPU, class, window, the policy's caps, the process scope
  // (a cgroup must exist: it is resolved to its id now) and the break-glass
  // rate. See GrantDecision for when the nonce is consumed.
  GrantDecision check(std::string_view request_text, std::span<const auth::SignatureInput> signatures,
                      const DeviceTable& devices, int64_t now_unix, uint64_t now_boot_ns);

  [[nodiscard]] const SignersConfig& signers() const { return signers_; }
  [[nodiscard]] const std::string& host_id() const { return host_id_; }

 private:
  GrantService(auth::NonceStore nonces, SignersConfig signers, std::string host_id, CgroupResolver cgroups)
      : nonces_(std::move(nonces)),
        signers_(std::move(signers)),
        host_id_(std::move(host_id)),
        cgroups_(std::move(cgroups)) {}
  // The checks that need no signature; the first problem, or nothing.
  std::optional<std::string> check_request(const auth::AuthRequest& req, const DeviceTable& devices, int64_t now_unix,
                                           AcceptedRequest& out);
  auth::NonceStore nonces_;
  SignersConfig signers_;
  std::string host_id_;
  CgroupResolver cgroups_;
  std::vector<int64_t> break_glass_times_;  // Unix seconds of recent break-glass grants
};

}  // namespace gpugate
