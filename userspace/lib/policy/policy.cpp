#include "gpugate/policy.hpp"

#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "gpugate/allowed_signers.hpp"
#include "gpugate/device.hpp"
#include "gpugate/request.hpp"

namespace gpugate {
namespace {

// A TOML basic string: policy show must print what policy check reads back.
std::string toml_quote(std::string_view v) {
  std::string out = "\"";
  for (unsigned char c : v) {
    if (c == '"' || c == '\\')
      out += fmt::format("\\{}", static_cast<char>(c));
    else if (c < 0x20 || c == 0x7f)
      out += fmt::format("\\u{:04x}", c);
    else
      out += static_cast<char>(c);
  }
  return out + "\"";
}

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

// A duration string ("15m", "1h") from 1 s up to cap seconds; nullopt for
// anything else, and the caller says what the key wants.
std::optional<int64_t> duration_value(const toml::node& v, int64_t cap) {
  auto text = v.value<std::string>();
  if (!text) return std::nullopt;
  auto d = auth::parse_duration(*text);
  if (!d || *d > cap) return std::nullopt;
  return *d;
}

std::string where(const std::string& name, const toml::source_region& r) {
  return fmt::format("{}:{}", name, r.begin.line);
}

std::optional<unsigned> vendor_from_name(std::string_view s) {
  if (s == "nvidia") return GG_VENDOR_NVIDIA;
  if (s == "amd") return GG_VENDOR_AMD;
  if (s == "intel") return GG_VENDOR_INTEL;
  if (s == "other") return GG_VENDOR_OTHER;
  return std::nullopt;
}

constexpr long kCgroup2Magic = 0x63677270;

// One [[rules]] table into its kernel form; errors name file:line and the fix.
Result<void> parse_rule(const toml::table& t, const std::string& name, unsigned index, Policy& p) {
  PolicyRule spec;
  spec.line = static_cast<int>(t.source().begin.line);
  spec.name = fmt::format("rule {}", index + 1);
  gg_rule rule{};
  auto at = [&](const toml::node& n) { return where(name, n.source()); };
  for (auto&& [key, node] : t) {
    std::string k(key.str());
    if (k == "name") {
      auto v = node.value<std::string>();
      if (!v) return make_error(fmt::format("{}: rule name must be a string", at(node)));
      spec.name = *v;
    } else if (k == "class") {
      std::vector<const toml::node*> items;
      if (auto* arr = node.as_array()) {
        for (auto& n : *arr) items.push_back(&n);
      } else {
        items.push_back(&node);
      }
      if (items.empty()) return make_error(fmt::format("{}: class = [] matches nothing; name a class", at(node)));
      for (const auto* n : items) {
        auto v = n->value<std::string>();
        auto cls = v ? class_from_name(*v) : std::nullopt;
        if (!cls)
          return make_error(fmt::format("{}: unknown class \"{}\"; the classes are: {}", at(*n),
                                        v.value_or("(not a string)"), class_list()));
        rule.classes |= 1u << *cls;
        spec.classes.push_back(*v);
      }
      rule.match |= GG_RM_CLASS;
    } else if (k == "vendor") {
      auto v = node.value<std::string>();
      auto vendor = v ? vendor_from_name(*v) : std::nullopt;
      if (!vendor)
        return make_error(fmt::format(
            "{}: vendor must be nvidia, amd, intel or other (virtio-gpu, bochs, vgem and other DRM drivers)",
            at(node)));
      rule.vendor = static_cast<uint8_t>(*vendor);
      rule.match |= GG_RM_VENDOR;
      spec.vendor = *v;
    } else if (k == "gpu") {
      auto v = node.value<std::string>();
      struct stat st {};
      if (!v) return make_error(fmt::format("{}: gpu must be a device node path such as \"/dev/nvidia0\"", at(node)));
      if (stat(v->c_str(), &st) != 0 || !S_ISCHR(st.st_mode))
        return make_error(
            fmt::format("{}: gpu \"{}\" is not a character device on this machine ({}); name a GPU node "
                        "that exists (gpugate devices lists them)",
                        at(node), *v, stat(v->c_str(), &st) != 0 ? std::strerror(errno) : "not a device"));
      rule.dev = static_cast<uint32_t>(kernel_dev(major(st.st_rdev), minor(st.st_rdev)));
      rule.match |= GG_RM_DEV;
      spec.gpu = *v;
    } else if (k == "uid") {
      auto v = node.value<int64_t>();
      if (!v || *v < 0 || *v > 0xfffffffe)
        return make_error(fmt::format("{}: uid must be a number (a user id, such as 0 or 1000)", at(node)));
      rule.uid = static_cast<uint32_t>(*v);
      rule.match |= GG_RM_UID;
      spec.uid = rule.uid;
    } else if (k == "comm") {
      auto v = node.value<std::string>();
      if (!v || v->empty() || v->size() >= GG_COMM_LEN)
        return make_error(
            fmt::format("{}: comm must be a process name of 1 to {} characters, as the kernel keeps it "
                        "(ps -o comm)",
                        at(node), GG_COMM_LEN - 1));
      std::memcpy(rule.comm, v->data(), v->size());
      rule.match |= GG_RM_COMM;
      spec.comm = *v;
    } else if (k == "cgroup") {
      auto v = node.value<std::string>();
      struct stat st {};
      struct statfs fs {};
      if (!v || stat(v->c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || statfs(v->c_str(), &fs) != 0 ||
          fs.f_type != kCgroup2Magic)
        return make_error(
            fmt::format("{}: cgroup must be the path of an existing cgroup v2 directory, such as "
                        "\"/sys/fs/cgroup/system.slice/train.service\"",
                        at(node)));
      rule.cgroup_id = st.st_ino;  // a cgroup v2 id is its directory's inode number
      rule.match |= GG_RM_CGROUP;
      spec.cgroup = *v;
    } else if (k == "action") {
      auto v = node.value<std::string>();
      auto act = v ? action_from_name(*v) : std::nullopt;
      if (!act)
        return make_error(fmt::format("{}: action must be one of allow, log, deny, require-signature", at(node)));
      rule.action = static_cast<uint8_t>(*act);
      spec.action = *v;
    } else {
      return make_error(
          fmt::format("{}: unknown key \"{}\" in a rule; a rule has name, class, vendor, gpu, uid, "
                      "comm, cgroup and action",
                      at(node), k));
    }
  }
  if (spec.action.empty())
    return make_error(
        fmt::format("{}:{}: {} has no action; add action = \"allow\", \"log\", \"deny\" or "
                    "\"require-signature\"",
                    name, spec.line, spec.name));
  if (!rule.match)
    return make_error(
        fmt::format("{}:{}: {} matches everything; give it a class, vendor, gpu, uid, comm or cgroup "
                    "(the [classes] table sets the default per class)",
                    name, spec.line, spec.name));
  p.table.rules[index] = rule;
  p.rules.push_back(std::move(spec));
  return {};
}

// [signers]: allowed_signers, break_glass_per_hour, the caps and [[signers.groups]].
Result<void> parse_signers(const toml::node& node, const std::string& name, Policy& p) {
  auto at = [&](const toml::node& n) { return where(name, n.source()); };
  auto* t = node.as_table();
  if (!t)
    return make_error(fmt::format("{}: signers must be a table: [signers] then allowed_signers = \"PATH\"", at(node)));
  for (auto&& [key, v] : *t) {
    std::string k(key.str());
    if (k == "allowed_signers") {
      auto s = v.value<std::string>();
      if (!s || s->empty() || (*s)[0] != '/')
        return make_error(
            fmt::format("{}: allowed_signers must be an absolute path to an OpenSSH allowed_signers file", at(v)));
      p.signers.allowed_signers = *s;
    } else if (k == "max_grant_window") {
      auto d = duration_value(v, kMaxGrantWindowCap);
      if (!d)
        return make_error(fmt::format(
            "{}: max_grant_window must be a duration string from 1s to {}, such as \"1h\" or \"15m\" (the longest "
            "window one signed request may grant; default {})",
            at(v), auth::format_duration(kMaxGrantWindowCap), auth::format_duration(kDefaultMaxGrantWindow)));
      p.signers.max_grant_window = *d;
    } else if (k == "max_grant_uses") {
      auto n = v.value<int64_t>();
      if (!n || *n < 1 || *n > auth::kMaxGrantUses || !v.is_integer())
        return make_error(fmt::format(
            "{}: max_grant_uses must be a number from 1 to {} (the request format's own maximum): the most commands "
            "one signed request may allow; default {}",
            at(v), auth::kMaxGrantUses, kDefaultMaxGrantUses));
      p.signers.max_grant_uses = *n;
    } else if (k == "break_glass_per_hour") {
      auto n = v.value<int64_t>();
      if (!n || *n < 0 || *n > 60)
        return make_error(fmt::format("{}: break_glass_per_hour must be a number from 0 to 60", at(v)));
      p.signers.break_glass_per_hour = static_cast<unsigned>(*n);
    } else if (k == "groups") {
      auto* arr = v.as_array();
      if (!arr || !arr->is_array_of_tables())
        return make_error(
            fmt::format("{}: groups must be [[signers.groups]] tables with name, principals and "
                        "threshold",
                        at(v)));
      for (auto& g : *arr) {
        auth::SignerGroup group;
        for (auto&& [gk, gv] : *g.as_table()) {
          std::string gks(gk.str());
          if (gks == "name" && gv.value<std::string>()) {
            group.name = *gv.value<std::string>();
          } else if (gks == "threshold" && gv.value<int64_t>() && *gv.value<int64_t>() > 0) {
            group.threshold = static_cast<unsigned>(*gv.value<int64_t>());
          } else if (gks == "break_glass" && gv.value<bool>()) {
            group.break_glass = *gv.value<bool>();
          } else if (gks == "principals" && gv.as_array()) {
            for (auto& pr : *gv.as_array()) {
              if (!pr.value<std::string>())
                return make_error(fmt::format("{}: principals are strings such as \"alice@example.org\"", at(pr)));
              group.principals.push_back(*pr.value<std::string>());
            }
          } else {
            return make_error(
                fmt::format("{}: signer group key \"{}\": a group has name (string), principals (list "
                            "of strings), threshold (a number >= 1) and break_glass (true/false)",
                            at(gv), gks));
          }
        }
        if (auto ok = auth::validate_signer_group(group); !ok)
          return make_error(fmt::format("{}: {}", at(g), ok.error().message));
        p.signers.groups.push_back(std::move(group));
      }
    } else {
      return make_error(
          fmt::format("{}: unknown key \"{}\" in [signers]; it has allowed_signers, "
                      "break_glass_per_hour, max_grant_window, max_grant_uses and [[signers.groups]]",
                      at(v), k));
    }
  }
  return {};
}

std::optional<unsigned> record_level_from_name(std::string_view s) {
  for (unsigned l = 0; l < GG_REC_LEVELS; l++)
    if (s == record_level_name(l)) return l;
  return std::nullopt;
}

// [record]: interval and a level per class. Lowering a class that must be
// recorded call by call is refused here, so policy check says it before
// the daemon would have to.
Result<void> parse_record(const toml::node& node, const std::string& name, Policy& p) {
  auto at = [&](const toml::node& n) { return where(name, n.source()); };
  auto* t = node.as_table();
  if (!t) return make_error(fmt::format("{}: record must be a table: [record] then \"query\" = \"summary\"", at(node)));
  for (auto&& [key, v] : *t) {
    std::string k(key.str());
    if (k == "interval") {
      auto d = duration_value(v, kMaxSummaryInterval);
      if (!d)
        return make_error(fmt::format(
            "{}: interval must be a duration string from 1s to {}, such as \"1m\": how often summaries and counts "
            "are written (default {})",
            at(v), auth::format_duration(kMaxSummaryInterval), auth::format_duration(kDefaultSummaryInterval)));
      p.record.interval = *d;
      continue;
    }
    auto cls = class_from_name(k);
    if (!cls)
      return make_error(fmt::format("{}: unknown key \"{}\" in [record]; it has interval and a level per class ({})",
                                    at(v), k, class_list()));
    auto text = v.value<std::string>();
    auto level = text ? record_level_from_name(*text) : std::nullopt;
    if (!level)
      return make_error(
          fmt::format("{}: class \"{}\": the recording level must be \"full\" (a record per call), \"summary\" (per "
                      "process, node and command per interval) or \"count\" (counters per class)",
                      at(v), k));
    if (*level != GG_REC_FULL && !gg_class_may_summarize(*cls))
      return make_error(fmt::format(
          "{}: class \"{}\" is always recorded in full: only query, other and resource traffic may be summarized "
          "or counted (a gated, configuration or unknown command keeps its own record); remove the line or set "
          "\"full\"",
          at(v), k));
    p.record.level[*cls] = static_cast<uint8_t>(*level);
  }
  return {};
}

// A class whose action gates keeps full records: summarizing it would hide
// the very calls the policy judges.
Result<void> check_record_levels(const Policy& p) {
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++)
    if (p.record.level[c] != GG_REC_FULL && gg_action_gates(p.table.action[c]))
      return make_error(fmt::format(
          "{}: class \"{}\" is {} by [classes] but recorded at \"{}\" by [record]: a gated class is recorded "
          "in full; set it to \"full\" or its action to log",
          p.source, class_name(c), action_name(p.table.action[c]), record_level_name(p.record.level[c])));
  return {};
}

}  // namespace

std::string_view record_level_name(unsigned level) {
  switch (level) {
    case GG_REC_FULL: return "full";
    case GG_REC_SUMMARY: return "summary";
    case GG_REC_COUNT: return "count";
    default: return "?";
  }
}

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
  p.signers.source = name;
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
    } else if (k == "profile") {
      auto v = node.value<std::string>();
      if (!v || (*v != "default" && *v != "strict"))
        return make_error(fmt::format(
            "{}: profile must be \"default\" or \"strict\" (strict also gates every privileged opaque NVIDIA "
            "control: GSS-legacy root-only ids and any control on a BINAPI object; docs/gate.md)",
            where(name, node.source())));
      if (*v == "strict")
        p.table.flags |= GG_POLF_STRICT;
      else
        p.table.flags &= static_cast<uint8_t>(~GG_POLF_STRICT);
    } else if (k == "read_wait_max_us") {
      auto v = node.value<int64_t>();
      if (!v || !node.is_integer() || *v < 1 || *v > kMaxReadWaitUs)
        return make_error(fmt::format(
            "{}: read_wait_max_us must be a number of microseconds from 1 to {}: the longest the gate may wait for "
            "a page of a request to be faulted in before it denies the request (default {})",
            where(name, node.source()), kMaxReadWaitUs, GG_READ_WAIT_MAX_NS_DEFAULT / 1000));
      p.table.read_wait_max_ns = static_cast<uint32_t>(*v * 1000);
    } else if (k == "disk_full_action") {
      auto v = node.value<std::string>();
      if (!v || (*v != "deny-gated" && *v != "keep-enforcing"))
        return make_error(fmt::format(
            "{}: disk_full_action must be \"deny-gated\" (while the ledger cannot be written, gated commands are "
            "denied, grant or not) or \"keep-enforcing\" (the policy decides as usual; records wait in memory)",
            where(name, node.source())));
      p.disk_full_action = *v == "deny-gated" ? DiskFullAction::deny_gated : DiskFullAction::keep_enforcing;
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
    } else if (k == "signers") {
      if (auto r = parse_signers(node, name, p); !r) return r.error();
    } else if (k == "record") {
      if (auto r = parse_record(node, name, p); !r) return r.error();
    } else if (k == "rules") {
      auto* arr = node.as_array();
      if (!arr || !arr->is_array_of_tables())
        return make_error(fmt::format("{}: rules must be an array of tables: [[rules]] then class = ..., action = ...",
                                      where(name, node.source())));
      if (arr->size() > GG_MAX_RULES)
        return make_error(fmt::format("{}: {} rules; the kernel holds at most {}: merge rules with class lists",
                                      where(name, node.source()), arr->size(), GG_MAX_RULES));
      for (size_t i = 0; i < arr->size(); i++)
        if (auto r = parse_rule(*arr->get(i)->as_table(), name, static_cast<unsigned>(i), p); !r) return r.error();
      p.table.nrules = static_cast<uint8_t>(arr->size());
    } else {
      return make_error(fmt::format(
          "{}: unknown key \"{}\"; a policy has version, mode, profile, read_wait_max_us, disk_full_action, "
          "[classes], "
          "[record], [[rules]] and [signers]",
          where(name, node.source()), k));
    }
  }
  if (auto r = check_record_levels(p); !r) return r.error();
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

Result<void> check_allowed_signers(const SignersConfig& signers) {
  if (signers.allowed_signers.empty()) return {};
  // The whole file is refused for one bad line (AllowedSigners::parse), and
  // the error names file:line and the fix.
  auto file = auth::AllowedSigners::load(signers.allowed_signers);
  if (!file) return file.error();
  return {};
}

std::string_view disk_full_action_name(DiskFullAction a) {
  return a == DiskFullAction::deny_gated ? "deny-gated" : "keep-enforcing";
}

std::string policy_to_toml(const Policy& p) {
  std::string out = fmt::format("# gpugate policy ({})\nversion = 1\n", p.source);
  if (!p.mode_name.empty()) out += fmt::format("mode = \"{}\"\n", p.mode_name);
  out += fmt::format("profile = \"{}\"\n", (p.table.flags & GG_POLF_STRICT) ? "strict" : "default");
  out += fmt::format("read_wait_max_us = {}\n",
                     (p.table.read_wait_max_ns ? p.table.read_wait_max_ns : GG_READ_WAIT_MAX_NS_DEFAULT) / 1000);
  out += fmt::format("disk_full_action = \"{}\"\n", disk_full_action_name(p.disk_full_action));
  out += "\n[classes]\n";
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++)
    out += fmt::format("\"{}\" = \"{}\"\n", class_name(c), action_name(p.table.action[c]));
  out += fmt::format("\n[record]\ninterval = \"{}\"\n", auth::format_duration(p.record.interval));
  for (unsigned c = 0; c < GG_CLASS_COUNT; c++)
    if (gg_class_may_summarize(c))
      out += fmt::format("\"{}\" = \"{}\"\n", class_name(c), record_level_name(p.record.level[c]));
  {
    out += "\n[signers]\n";
    if (p.signers.allowed_signers.empty())
      out += "# allowed_signers = \"/etc/gpugate/allowed_signers\"   # none: every signed request is refused\n";
    else
      out += fmt::format("allowed_signers = {}\n", toml_quote(p.signers.allowed_signers));
    out += fmt::format("break_glass_per_hour = {}\nmax_grant_window = \"{}\"\nmax_grant_uses = {}\n",
                       p.signers.break_glass_per_hour, auth::format_duration(p.signers.max_grant_window),
                       p.signers.max_grant_uses);
    for (const auto& g : p.signers.groups) {
      out += fmt::format("\n[[signers.groups]]\nname = {}\nthreshold = {}\n", toml_quote(g.name), g.threshold);
      if (g.break_glass) out += "break_glass = true\n";
      out += "principals = [";
      for (size_t i = 0; i < g.principals.size(); i++)
        out += fmt::format("{}{}", i ? ", " : "", toml_quote(g.principals[i]));
      out += "]\n";
    }
  }
  for (const auto& r : p.rules) {
    out += fmt::format("\n[[rules]]\nname = {}\n", toml_quote(r.name));
    if (!r.classes.empty()) {
      out += "class = [";
      for (size_t i = 0; i < r.classes.size(); i++) out += fmt::format("{}{}", i ? ", " : "", toml_quote(r.classes[i]));
      out += "]\n";
    }
    if (!r.vendor.empty()) out += fmt::format("vendor = {}\n", toml_quote(r.vendor));
    if (!r.gpu.empty()) out += fmt::format("gpu = {}\n", toml_quote(r.gpu));
    if (r.uid) out += fmt::format("uid = {}\n", *r.uid);
    if (!r.comm.empty()) out += fmt::format("comm = {}\n", toml_quote(r.comm));
    if (!r.cgroup.empty()) out += fmt::format("cgroup = {}\n", toml_quote(r.cgroup));
    out += fmt::format("action = \"{}\"\n", r.action);
  }
  return out;
}

}  // namespace gpugate
