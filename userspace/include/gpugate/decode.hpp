// The shared C decoder (kmod/common/gg_decode.h) for C++, plus the names
// and renderings that only humans and ledgers need.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

extern "C" {
#include "gg_verdict_export.h"
#include "gpugate/event.h"
}

#include "gpugate/result.hpp"

namespace gpugate {

// Calls into the very decoder BPF runs (compiled from the same header).
gg_decoded decode(const gg_raw& raw);

// Staged capture for user space (sim engine, CLI): builds a gg_raw from
// buffers that stand for user memory, asking the decoder what to take,
// exactly as bpf/capture.bpf.h does from real user memory.
struct RawInput {
  uint32_t dev_kind = GG_DEV_NONE;
  uint32_t drm_driver = GG_DRM_GENERIC;
  uint32_t request = 0;
  std::span<const uint8_t> arg;     // what the ioctl argument points at
  std::span<const uint8_t> inner;   // what an XFER's inner pointer points at
  std::span<const uint8_t> params;  // what the RM params pointer points at
  uint32_t target_class = 0;
  // false: a buffer shorter than asked for is unreadable, as a failed
  // bpf_probe_read_user is (the sim engine). true: take what is there and
  // let the decoder call it short (the CLI's --hex).
  bool partial = false;
};
gg_raw capture(const RawInput& in);

std::string_view class_name(unsigned cls);
std::optional<unsigned> class_from_name(std::string_view name);
bool class_gated_by_default(unsigned cls);
std::string_view priv_name(unsigned priv);
std::string_view source_name(unsigned src);
std::string_view vendor_name(unsigned vendor);
std::string_view dev_kind_name(unsigned kind);
std::optional<unsigned> dev_kind_from_name(std::string_view name);
std::string_view drm_driver_name(unsigned driver);
// A DRM driver by its kernel name ("amdgpu"), from drm_drivers.def; none for others.
std::optional<unsigned> drm_driver_from_name(std::string_view name);
std::vector<std::string_view> flag_names(uint32_t flags);
std::string_view nv_escape_name(unsigned nr);
std::string_view nv_object_class_name(uint32_t cls);

// "NV2080_CTRL_CMD_GPU_SET_POWER", "NV_ESC_RM_ALLOC", "DRM_IOCTL_VERSION"...
std::string command_name(const gg_raw& raw, const gg_decoded& d);
// Escape or ioctl name of the request word itself (before XFER unwrap).
std::string request_name(const gg_raw& raw, const gg_decoded& d);
// Named key parameters of the command.
std::vector<std::pair<std::string, uint64_t>> key_params(const gg_decoded& d);
// Where a named key parameter lives: every (pkind, index) whose layout has it
// (names compared without case: "newlevel" finds newLevel).
struct KeyParamRef {
  unsigned pkind = 0;
  unsigned index = 0;
};
std::vector<KeyParamRef> key_param_refs(std::string_view name);

class JsonOut;
// The decoded command as a JSON object value (the ledger's "decoded" field).
void write_decoded(JsonOut& out, const gg_raw& raw, const gg_decoded& d);
// The captured bytes as members of the ledger's "request" object.
void write_raw(JsonOut& out, const gg_raw& raw);
// The same, as nlohmann objects (CLI, tests).
nlohmann::ordered_json decoded_json(const gg_raw& raw, const gg_decoded& d);
// The captured bytes as a JSON object (the ledger's "bytes" field).
nlohmann::ordered_json raw_json(const gg_raw& raw);
// And back: rebuild gg_raw from a ledger record's request object.
Result<gg_raw> raw_from_json(const nlohmann::json& request);
// One line for people: "NV2080_CTRL_CMD_GPU_SET_POWER [power.off] target=0 newLevel=4".
std::string describe(const gg_raw& raw, const gg_decoded& d);

// Policy vocabulary (enum values of types.h).
std::string_view mode_name(unsigned mode);        // observe, monitor, enforce
std::string_view action_name(unsigned action);    // allow, log, deny, require-signature
std::string_view verdict_name(unsigned verdict);  // allowed, denied, would-deny
std::string_view hook_name(unsigned hook);
std::string_view reason_name(unsigned reason);  // class, rule, grant, capture, unrecorded, ...
std::string_view guard_op_name(unsigned op);    // map-write, map-fd, ...
// Why a capture stage was refused or flagged (userfaultfd, fuse, slow-read, ...).
std::vector<std::string_view> capture_reason_names(uint32_t capture_flags);
std::optional<uint32_t> capture_reason_from_name(std::string_view name);
// The built-in policy: the classes DESIGN section 2 gates require a
// signature, every other class is logged.
gg_policy default_policy(unsigned mode);
// The shared verdict function, as BPF runs it, for a bare class (no rules).
unsigned decide(const gg_policy& policy, unsigned cls, bool granted, bool recorded);

// The full decision, as the gate makes it: rules first (first match), then
// the class's action; the mode turns the action into a verdict.
struct Decision {
  unsigned action = 0;   // enum gg_action
  unsigned rule = 0;     // matching rule's index + 1; 0: the class's action
  unsigned verdict = 0;  // enum gg_verdict
};
Decision decide(const gg_policy& policy, const gg_subject& subject, bool granted, bool recorded);
// The subject of a recorded request (comm points into e).
gg_subject subject_of(const gg_ioctl_enter& e);

// Table views for tests and docs.
struct TableInfo {
  unsigned table;
  std::string_view name;
  size_t size;
};
std::vector<TableInfo> tables();
std::string_view table_name(unsigned table);
std::string_view table_entry_name(unsigned table, size_t index);

}  // namespace gpugate
