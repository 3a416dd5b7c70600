// Renderings of a decoded command: JSON for ledgers, one line for people.
#include <fmt/format.h>

#include "gpugate/decode.hpp"

#include <algorithm>
#include <optional>
#include "gpugate/hex.hpp"
#include "gpugate/json_out.hpp"

namespace gpugate {

void write_decoded(JsonOut& o, const gg_raw& raw, const gg_decoded& d) {
  o.begin_object();
  o.field("vendor", vendor_name(d.vendor));
  o.field("request", std::string_view(request_name(raw, d)));
  o.field("command", std::string_view(command_name(raw, d)));
  o.key("command_id").hex32(d.command);
  o.field("class", class_name(d.cls));
  o.field("class_source", source_name(d.cls_source));
  o.field("privilege", priv_name(d.priv));
  o.key("params").begin_object();
  for (const auto& [name, value] : key_params(d)) o.field(name, value);
  o.end_object();
  o.key("flags").begin_array();
  for (auto f : flag_names(d.flags)) o.str(f);
  o.end_array();
  if (raw.dev_kind == GG_DEV_NVIDIA_CTL || raw.dev_kind == GG_DEV_NVIDIA_GPU) {
    static constexpr char kHex[] = "0123456789abcdef";
    char esc[4] = {'0', 'x', kHex[d.nr >> 4], kHex[d.nr & 0xf]};
    o.field("escape", std::string_view(esc, 4));
    if (d.client || d.object) {
      o.key("client").hex32(d.client);
      o.key("object").hex32(d.object);
    }
    if (d.params_ptr || d.params_size) o.field("params_size", d.params_size);
    if (raw.target_class) o.field("target_class", std::string_view(fmt::format("{:#06x}", raw.target_class)));
  }
  o.end_object();
}

void write_raw(JsonOut& o, const gg_raw& raw) {
  o.key("ioctl").hex32(raw.request);
  o.field("dev_kind", dev_kind_name(raw.dev_kind));
  if (raw.dev_kind == GG_DEV_DRM) o.field("drm_driver", drm_driver_name(raw.drm_driver));
  // lengths from elsewhere (a ledger, a fuzzer) may lie: never past the buffers
  o.key("arg").hex_bytes(raw.arg, std::min<uint32_t>(raw.arg_len, GG_ARG_MAX));
  if (raw.inner_len) o.key("inner").hex_bytes(raw.inner, std::min<uint32_t>(raw.inner_len, GG_ARG_MAX));
  if (raw.params_len) o.key("params").hex_bytes(raw.params, std::min<uint32_t>(raw.params_len, GG_PARAMS_MAX));
  if (raw.capture_flags & (GG_CAP_ARG_FAULT | GG_CAP_INNER_FAULT | GG_CAP_PARAMS_FAULT)) {
    o.key("unreadable").begin_array();
    if (raw.capture_flags & GG_CAP_ARG_FAULT) o.str("arg");
    if (raw.capture_flags & GG_CAP_INNER_FAULT) o.str("inner");
    if (raw.capture_flags & GG_CAP_PARAMS_FAULT) o.str("params");
    o.end_array();
  }
  if (auto why = capture_reason_names(raw.capture_flags); !why.empty()) {
    o.key("capture").begin_array();
    for (auto w : why) o.str(w);
    o.end_array();
  }
  if (raw.target_class) o.field("target_class", raw.target_class);
}

nlohmann::ordered_json decoded_json(const gg_raw& raw, const gg_decoded& d) {
  std::string text;
  JsonOut o(text);
  write_decoded(o, raw, d);
  return nlohmann::ordered_json::parse(text);
}

nlohmann::ordered_json raw_json(const gg_raw& raw) {
  std::string text;
  JsonOut o(text);
  o.begin_object();
  write_raw(o, raw);
  o.end_object();
  return nlohmann::ordered_json::parse(text);
}

namespace {
Result<void> fill(const nlohmann::json& j, const char* key, uint8_t* dst, uint32_t cap, uint32_t& len) {
  if (!j.contains(key)) return {};
  if (!j[key].is_string()) return make_error(fmt::format("request.{}: expected a hex string", key));
  auto bytes = parse_hex(j[key].get<std::string>());
  if (!bytes) return make_error(fmt::format("request.{}: {}", key, bytes.error().message));
  if (bytes->size() > cap)
    return make_error(fmt::format("request.{}: {} bytes, more than the {} a record can hold", key, bytes->size(), cap));
  std::copy(bytes->begin(), bytes->end(), dst);
  len = static_cast<uint32_t>(bytes->size());
  return {};
}
}  // namespace

Result<gg_raw> raw_from_json(const nlohmann::json& j) {
  gg_raw raw{};
  if (!j.is_object() || !j.contains("ioctl") || !j["ioctl"].is_string())
    return make_error("request: missing \"ioctl\" (the request word as a hex string)");
  auto req = parse_number(j["ioctl"].get<std::string>(), UINT32_MAX);
  if (!req) return make_error("request.ioctl: " + req.error().message);
  raw.request = static_cast<uint32_t>(*req);
  auto text_of = [&](const char* key, const char* dflt) -> std::optional<std::string> {
    if (!j.contains(key)) return dflt;
    if (!j[key].is_string()) return std::nullopt;
    return j[key].get<std::string>();
  };
  auto kind_name = text_of("dev_kind", "none");
  auto kind = kind_name ? dev_kind_from_name(*kind_name) : std::nullopt;
  if (!kind) return make_error("request.dev_kind: not a device kind gpugate knows (a string such as \"nvidia-ctl\")");
  raw.dev_kind = static_cast<uint8_t>(*kind);
  auto drv_name = text_of("drm_driver", "generic");
  if (!drv_name) return make_error("request.drm_driver: expected a string such as \"amdgpu\"");
  std::string drv = *drv_name;
  for (unsigned i = 0; i < GG_DRM_DRIVER_COUNT; i++)
    if (drv == drm_driver_name(i)) raw.drm_driver = static_cast<uint8_t>(i);
  if (auto r = fill(j, "arg", raw.arg, GG_ARG_MAX, raw.arg_len); !r) return r.error();
  if (auto r = fill(j, "inner", raw.inner, GG_ARG_MAX, raw.inner_len); !r) return r.error();
  if (auto r = fill(j, "params", raw.params, GG_PARAMS_MAX, raw.params_len); !r) return r.error();
  if (j.contains("unreadable") && j["unreadable"].is_array()) {
    for (const auto& f : j["unreadable"]) {
      if (f == "arg") raw.capture_flags |= GG_CAP_ARG_FAULT;
      if (f == "inner") raw.capture_flags |= GG_CAP_INNER_FAULT;
      if (f == "params") raw.capture_flags |= GG_CAP_PARAMS_FAULT;
    }
  }
  if (j.contains("capture") && j["capture"].is_array()) {
    for (const auto& f : j["capture"])
      if (f.is_string())
        if (auto bit = capture_reason_from_name(f.get<std::string>())) raw.capture_flags |= static_cast<uint16_t>(*bit);
  }
  if (j.contains("target_class") && j["target_class"].is_number_unsigned())
    raw.target_class = j["target_class"].get<uint32_t>();
  return raw;
}

std::string describe(const gg_raw& raw, const gg_decoded& d) {
  std::string out = command_name(raw, d);
  if (d.flags & GG_DF_XFER) out += " (via XFER)";
  out += fmt::format(" [{}", class_name(d.cls));
  if (d.cls_source == GG_SRC_INFERRED) out += ", inferred";
  out += "]";
  for (const auto& [name, value] : key_params(d)) out += fmt::format(" {}={:#x}", name, value);
  // what was odd about the request; xfer, read keys and known objects are not
  auto flags = flag_names(d.flags & ~(GG_DF_XFER | GG_DF_KEYS_VALID | GG_DF_OBJECT_KNOWN));
  if (!flags.empty()) out += fmt::format(" !{}", fmt::join(flags, ","));
  return out;
}

}  // namespace gpugate
