#include "gpugate/policy.hpp"

#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

namespace gpugate {
namespace {

std::string class_list() {
  std::string out;
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++) out += (c ? ", " : "") + std::string(class_name(c));
  return out;
}

std::optional<unsigned> action_from_name(std::string_view s) {
  for (unsigned a : {GG_ACT_ALLOW, GG_ACT_LOG, GG_ACT_DENY, GG_ACT_REQUIRE_SIGNATURE})
    if (s == action_name(a)) return a;
  return std::nullopt;
}

std::string where(const std::string& name, const toml::source_region& r) {
  return fmt::format("{}:{}", name, r.begin.line);
}

}  // namespace

Policy builtin_policy(unsigned mode) {
  Policy p;
  p.table = default_policy(mode);
  p.source = "built-in";
  return p;
}

Result<Policy> parse_policy(const std::string& text, const std::string& name) {
  toml::table doc;
  try {
    doc = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    return make_error(fmt::format("{}:{}: not valid TOML: {}; fix the syntax at that place", name,
                                  e.source().begin.line, e.description()));
  }
  Policy p = builtin_policy(GG_MODE_ENFORCE);
  p.source = name;
  for (auto&& [key, node] : doc) {
    std::string k(key.str());
    if (k == "version") {
      auto v = node.value<int64_t>();
      if (!v || *v != 1)
        return make_error(
            fmt::format("{}: version must be 1 (the only policy format gpugate knows)", where(name, node.source())));
    } else if (k == "mode") {
      auto v = node.value<std::string>();
      if (!v || (*v != "enforce" && *v != "monitor"))
        return make_error(fmt::format("{}: mode must be \"enforce\" or \"monitor\"", where(name, node.source())));
      p.mode_name = *v;
      p.table.mode = static_cast<uint8_t>(*v == "enforce" ? GG_MODE_ENFORCE : GG_MODE_MONITOR);
    } else if (k == "classes") {
      auto* t = node.as_table();
      if (!t)
        return make_error(
            fmt::format("{}: classes must be a table: [classes] then \"power.off\" = "
                        "\"require-signature\"",
                        where(name, node.source())));
      for (auto&& [ck, cv] : *t) {
        auto cls = class_from_name(ck.str());
        if (!cls)
          return make_error(fmt::format("{}: unknown class \"{}\"; the classes are: {}", where(name, cv.source()),
                                        ck.str(), class_list()));
        auto v = cv.value<std::string>();
        auto act = v ? action_from_name(*v) : std::nullopt;
        if (!act)
          return make_error(
              fmt::format("{}: class \"{}\": action must be one of allow, log, deny, "
                          "require-signature",
                          where(name, cv.source()), ck.str()));
        if (*cls == GG_CLASS_UNKNOWN && (*act == GG_ACT_DENY || *act == GG_ACT_REQUIRE_SIGNATURE))
          return make_error(
              fmt::format("{}: class \"unknown\" cannot be gated: blocking unknown commands breaks "
                          "nvidia-smi, NCCL and Nsight (DESIGN section 2); use \"log\"",
                          where(name, cv.source())));
        p.table.action[*cls] = static_cast<uint8_t>(*act);
      }
    } else {
      return make_error(fmt::format("{}: unknown key \"{}\"; a policy has version, mode and [classes]",
                                    where(name, node.source()), k));
    }
  }
  return p;
}

Result<Policy> load_policy(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return make_error(fmt::format("policy {}: {}; give an existing file, or leave --policy out for the built-in "
                                  "policy",
                                  path, std::strerror(errno)),
                      errno);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_policy(ss.str(), path);
}

std::string policy_to_toml(const Policy& p) {
  std::string out = fmt::format("# gpugate policy ({})\nversion = 1\n", p.source);
  if (!p.mode_name.empty()) out += fmt::format("mode = \"{}\"\n", p.mode_name);
  out += "\n[classes]\n";
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++)
    out += fmt::format("\"{}\" = \"{}\"\n", class_name(c), action_name(p.table.action[c]));
  return out;
}

}  // namespace gpugate
