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
//   not-before: 2026-11-28T09:40:00Z
//   not-after: 2026-11-28T09:50:00Z
//   nonce: 6f0c3e9a1b2d4c5e8f7a6b5c4d3e2f10
//   requester: alice@example.org
//   reason: INC-1234 rack 7 over its power budget
//
// Fields, in this order: host (the machine id), gpu (GPU UUID "GPU-...",
// PCI address "0000:3b:00.0", or index "0"), class (a gpugate class name),
// zero or more param lines "name=value" sorted by name, not-before and
// not-after (RFC 3339 UTC to the second, "Z"), nonce (32 hex digits the
// daemon issued), requester, reason (free UTF-8 text). Every line ends in a
// newline, the last one too.
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
inline constexpr size_t kNonceHexDigits = 32;  // 128 bits

struct RequestParam {
  std::string name;   // [a-z][a-z0-9_]*, e.g. "power_limit_mw"
  std::string value;  // printable ASCII without spaces, e.g. "250000"
  bool operator==(const RequestParam&) const = default;
};

struct AuthRequest {
  std::string host;
  std::string gpu;
  std::string class_name;            // "power.limit"
  std::vector<RequestParam> params;  // sorted by name, names unique
  int64_t not_before = 0;            // Unix seconds, UTC
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

// RFC 3339 UTC as the request uses it: "2026-11-28T09:40:00Z", nothing else.
Result<int64_t> parse_request_time(std::string_view text);
std::string format_request_time(int64_t unix_seconds);

// Whether this request may be acted on here and now: host_id equals the
// request's host, the request's gpu is one of gpu_ids (every name the target
// GPU goes by: its UUID, PCI address and index), and not_before <= now <
// not_after. Errors say which check failed, with both values.
Result<void> check_request_scope(const AuthRequest& request, std::string_view host_id,
                                 std::span<const std::string> gpu_ids, int64_t now);

}  // namespace gpugate::auth
