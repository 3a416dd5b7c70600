// The signed-request text: what an operator reads and signs to let one gated
// command through on one GPU of one host, once, within a time window.
//
// The text is canonical: one way to write each request, so the bytes signed
// are the bytes rendered, and parsing is strict (no unknown, repeated,
// reordered or missing fields, no odd characters). Example:
//
//   gpugate-request v1
//   host: 3d1219c7c4c5404aaa1f6d2a48adfda4
//   gpu: GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8
//   class: power.limit
//   param: power_limit_mw=250000
//   scope: unit=train.service
//   not-before: 2026-11-28T09:40:00Z
//   not-after: 2026-11-28T09:50:00Z
//   nonce: 6f0c3e9a1b2d4c5e8f7a6b5c4d3e2f10
//   requester: alice@example.org
//   reason: INC-1234 rack 7 over its power budget
//
// Fields, in this order: host (the machine id), gpu (GPU UUID "GPU-...",
// PCI address "0000:3b:00.0", or index "0"), class (a gpugate class name),
// zero or more param lines "name=value" sorted by name, scope (which
// processes may use the grant: "any", "uid=N", "cgroup=/path" or
// "unit=NAME.service"), not-before and not-after (RFC 3339 UTC to the second,
// "Z"), nonce (32 hex digits the daemon issued), requester, reason (free
// UTF-8 text). Every line ends in a newline, the last one too.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gpugate/result.hpp"

namespace gpugate::auth {

inline constexpr std::string_view kRequestHeader = "gpugate-request v1";
inline constexpr size_t kMaxRequestBytes = 8192;
inline constexpr size_t kNonceHexDigits = 32;   // 128 bits
inline constexpr int64_t kMaxGrantUses = 1000;  // param uses=N: 1 to this
inline constexpr size_t kMaxCgroupPathLength = 512;
inline constexpr size_t kMaxUnitNameLength = 255;  // systemd's limit

struct RequestParam {
  std::string name;   // [a-z][a-z0-9_]*, e.g. "power_limit_mw"
  std::string value;  // printable ASCII without spaces, e.g. "250000"
  bool operator==(const RequestParam&) const = default;
};

// Which processes may use a grant: part of what is signed, enforced by the
// kernel (the caller's cgroup v2 id or uid is compared), never chosen by the
// submitter.
enum class ScopeKind {
  kAny,     // "any": every process
  kUid,     // "uid=N": processes whose real uid is N (1 to 4294967294)
  kCgroup,  // "cgroup=/a/b": processes directly in that cgroup v2 directory
  kUnit,    // "unit=NAME.service" (or .scope): the cgroup /system.slice/NAME.service
};

struct RequestScope {
  ScopeKind kind = ScopeKind::kAny;
  uint32_t uid = 0;  // kUid
  std::string name;  // kCgroup: the path from the hierarchy's root ("/gpugate-exec/..."); kUnit: the unit name
  bool operator==(const RequestScope&) const = default;

  // The cgroup path the scope names, from the root of the cgroup v2
  // hierarchy: a kCgroup's path, a unit's /system.slice/NAME; "" otherwise.
  [[nodiscard]] std::string cgroup_path() const;
};

// The scope's text as the request writes it ("any", "uid=1000", ...).
std::string format_scope(const RequestScope& scope);
// Parses a scope value strictly; errors say what is wrong and how to write it.
Result<RequestScope> parse_scope(std::string_view text);
// The cgroup gpugate exec makes for a request: /gpugate-exec/NONCE.
std::string exec_cgroup_path(std::string_view nonce);

struct AuthRequest {
  std::string host;
  std::string gpu;
  std::string class_name;            // "power.limit"
  std::vector<RequestParam> params;  // sorted by name, names unique
  RequestScope scope;
  int64_t not_before = 0;  // Unix seconds, UTC
  int64_t not_after = 0;
  std::string nonce;  // 32 lowercase hex digits
  std::string requester;
  std::string reason;
  bool operator==(const AuthRequest&) const = default;
};

// Parses request text strictly. name is the file name used in errors
// ("req.txt:5: ..."): every error names the line, what is wrong and how to
// fix it.
Result<AuthRequest> parse_request(std::string_view text, std::string_view name);
// The canonical text. For a request that parse_request accepted, parse(render(r)) == r
// and render(parse(t)) == t. A request built by hand may not be valid:
// validate_request says so.
std::string render_request(const AuthRequest& request);
// Checks every field as parse_request would; errors name the field.
Result<void> validate_request(const AuthRequest& request);

enum class GpuRefKind { kUuid, kPciAddress, kIndex };
// What a gpu field names, or why it is none of the three forms.
Result<GpuRefKind> classify_gpu_ref(std::string_view gpu);

// A length of time as requests and policies write it: a positive number
// followed by s, m, h or d ("90s", "15m", "1h", "2d"). format_duration writes
// the largest unit that is exact.
Result<int64_t> parse_duration(std::string_view text);
std::string format_duration(int64_t seconds);

// RFC 3339 UTC as the request uses it: "2026-11-28T09:40:00Z", nothing else.
Result<int64_t> parse_request_time(std::string_view text);
std::string format_request_time(int64_t unix_seconds);

// Whether this request may be acted on here and now (its target: host, GPU
// and window; the process scope is resolved by the daemon): host_id equals the
// request's host, the request's gpu is one of gpu_ids (every name the target
// GPU goes by: its UUID, PCI address and index), and not_before <= now <
// not_after. Errors say which check failed, with both values.
Result<void> check_request_scope(const AuthRequest& request, std::string_view host_id,
                                 std::span<const std::string> gpu_ids, int64_t now);

}  // namespace gpugate::auth
