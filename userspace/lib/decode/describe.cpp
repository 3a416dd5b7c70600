// Renderings of a decoded command: JSON for ledgers, one line for people.
#include <fmt/format.h>

#include "gpugate/decode.hpp"
#include "gpugate/hex.hpp"

namespace gpugate {

nlohmann::ordered_json decoded_json(const gg_raw& raw, const gg_decoded& d) {
  nlohmann::ordered_json j;
  j["vendor"] = vendor_name(d.vendor);
  j["request"] = request_name(raw, d);
  j["command"] = command_name(raw, d);
  j["command_id"] = fmt::format("{:#010x}", d.command);
  j["class"] = class_name(d.cls);
  j["class_source"] = source_name(d.cls_source);
  j["privilege"] = priv_name(d.priv);
  auto params = nlohmann::ordered_json::object();
  for (const auto& [name, value] : key_params(d)) params[name] = value;
  j["params"] = params;
  j["flags"] = flag_names(d.flags);
  if (raw.dev_kind == GG_DEV_NVIDIA_CTL || raw.dev_kind == GG_DEV_NVIDIA_GPU) {
    j["escape"] = fmt::format("{:#04x}", d.nr);
    if (d.client || d.object) {
      j["client"] = fmt::format("{:#010x}", d.client);
      j["object"] = fmt::format("{:#010x}", d.object);
    }
    if (d.params_ptr || d.params_size) j["params_size"] = d.params_size;
    if (raw.target_class) j["target_class"] = fmt::format("{:#06x}", raw.target_class);
  }
  return j;
}

nlohmann::ordered_json raw_json(const gg_raw& raw) {
  nlohmann::ordered_json j;
  j["ioctl"] = fmt::format("{:#010x}", raw.request);
  j["dev_kind"] = dev_kind_name(raw.dev_kind);
  if (raw.dev_kind == GG_DEV_DRM) j["drm_driver"] = drm_driver_name(raw.drm_driver);
  j["arg"] = to_hex({raw.arg, raw.arg_len});
  if (raw.inner_len) j["inner"] = to_hex({raw.inner, raw.inner_len});
  if (raw.params_len) j["params"] = to_hex({raw.params, raw.params_len});
  std::vector<std::string_view> faults;
  if (raw.capture_flags & GG_CAP_ARG_FAULT) faults.emplace_back("arg");
  if (raw.capture_flags & GG_CAP_INNER_FAULT) faults.emplace_back("inner");
  if (raw.capture_flags & GG_CAP_PARAMS_FAULT) faults.emplace_back("params");
  if (!faults.empty()) j["unreadable"] = faults;
  if (raw.target_class) j["target_class"] = raw.target_class;
  return j;
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
  auto kind = dev_kind_from_name(j.value("dev_kind", std::string("none")));
  if (!kind) return make_error("request.dev_kind: not a device kind gpugate knows");
  raw.dev_kind = static_cast<uint8_t>(*kind);
  std::string drv = j.value("drm_driver", std::string("generic"));
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
  auto flags = flag_names(d.flags & ~GG_DF_XFER);
  if (!flags.empty()) out += fmt::format(" !{}", fmt::join(flags, ","));
  return out;
}

}  // namespace gpugate
