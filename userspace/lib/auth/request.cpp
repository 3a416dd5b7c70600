#include "gpugate/request.hpp"

#include <algorithm>
#include <array>
#include <optional>

#include <fmt/format.h>

#include "wire.hpp"

namespace gpugate::auth {
namespace {

// Class names from the same table the kernel and the decoder use.
constexpr const char* kClassNames[] = {
#define GG_CLASS(ident, id, name, gated) name,
#include "gpugate/classes.def"
#undef GG_CLASS
};

constexpr size_t kMaxHostLength = 128;
constexpr size_t kMaxParamNameLength = 64;
constexpr size_t kMaxParamValueLength = 256;
constexpr size_t kMaxRequesterLength = 128;
constexpr size_t kMaxReasonLength = 1024;
constexpr unsigned kMaxGpuIndex = 255;

enum class Field { kHost, kGpu, kClass, kParam, kScope, kNotBefore, kNotAfter, kNonce, kRequester, kReason };
struct FieldInfo {
  Field field;
  std::string_view key;
};
constexpr std::array<FieldInfo, 10> kFields = {{
    {Field::kHost, "host"},
    {Field::kGpu, "gpu"},
    {Field::kClass, "class"},
    {Field::kParam, "param"},
    {Field::kScope, "scope"},
    {Field::kNotBefore, "not-before"},
    {Field::kNotAfter, "not-after"},
    {Field::kNonce, "nonce"},
    {Field::kRequester, "requester"},
    {Field::kReason, "reason"},
}};
constexpr std::string_view kFieldOrder =
    "host, gpu, class, param (zero or more), scope, not-before, not-after, nonce, requester, reason";
constexpr std::string_view kScopeForms =
    "'any' (every process), 'uid=N' (processes of that user id), 'cgroup=/PATH' (processes in that cgroup v2, "
    "from the hierarchy's root) or 'unit=NAME.service' (a system service: the cgroup /system.slice/NAME.service)";
constexpr uint64_t kMaxUid = 4294967294;  // (uid_t)-1 is no user

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
bool is_hex(char c) { return is_lower_hex(c) || (c >= 'A' && c <= 'F'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || is_digit(c); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }

std::string quoted(std::string_view s) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < 80; i++) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f)
      out.push_back(static_cast<char>(c));
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > 80) out += "...";
  return out + "'";
}

// Checks one line for bytes a reader would not see as they are: control
// characters, broken UTF-8, and invisible or direction-changing code points
// (what you sign must be what you read). Returns the reason and fix.
std::optional<std::string> bad_characters(std::string_view line) {
  for (size_t i = 0; i < line.size();) {
    auto c = static_cast<unsigned char>(line[i]);
    size_t col = i + 1;
    if (c == '\r')
      return fmt::format("carriage return at column {}; save the file with Unix line ends (dos2unix)", col);
    if (c == '\t') return fmt::format("tab at column {}; use spaces", col);
    if (c < 0x20 || c == 0x7f) return fmt::format("control character {:#04x} at column {}; remove it", c, col);
    if (c < 0x80) {
      i++;
      continue;
    }
    // UTF-8: lead byte, then continuation bytes; no overlong forms, no
    // surrogates, nothing above U+10FFFF.
    size_t len = 0;
    uint32_t cp = 0, min = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return fmt::format("byte {:#04x} at column {} is not UTF-8; save the file as UTF-8", c, col);
    }
    if (i + len > line.size()) return fmt::format("UTF-8 sequence cut short at column {}; save the file as UTF-8", col);
    for (size_t k = 1; k < len; k++) {
      auto cc = static_cast<unsigned char>(line[i + k]);
      if ((cc & 0xc0) != 0x80) return fmt::format("broken UTF-8 sequence at column {}; save the file as UTF-8", col);
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return fmt::format("invalid UTF-8 (overlong, surrogate or out of range) at column {}; save the file as UTF-8",
                         col);
    if (cp >= 0x80 && cp <= 0x9f) return fmt::format("control character U+{:04X} at column {}; remove it", cp, col);
    bool invisible = (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x202a && cp <= 0x202e) ||
                     (cp >= 0x2066 && cp <= 0x2069) || cp == 0x061c || cp == 0x2028 || cp == 0x2029 || cp == 0xfeff;
    if (invisible)
      return fmt::format(
          "invisible or text-direction character U+{:04X} at column {} (what is signed must read as "
          "it is); remove it",
          cp, col);
    i += len;
  }
  return std::nullopt;
}

using wire::days_from_civil;
using wire::days_in_month;

// Each check returns the reason and the fix, or nothing when the value is fine.
using Problem = std::optional<std::string>;

Problem check_host(std::string_view v) {
  if (v.size() > kMaxHostLength) return fmt::format("host id is longer than {} characters", kMaxHostLength);
  if (!is_alnum(v[0]) || !std::all_of(v.begin(), v.end(), [](char c) {
        return is_alnum(c) || c == '.' || c == '_' || c == ':' || c == '-';
      }))
    return fmt::format(
        "host id {} may hold only letters, digits, '.', '_', ':' and '-'; use the host's "
        "/etc/machine-id",
        quoted(v));
  return std::nullopt;
}

Problem check_class(std::string_view v) {
  for (const char* name : kClassNames)
    if (v == name) return std::nullopt;
  std::string names;
  for (const char* name : kClassNames) names += fmt::format("{}{}", names.empty() ? "" : ", ", name);
  return fmt::format("unknown class {}; gpugate's classes are {}", quoted(v), names);
}

Problem check_param(std::string_view v, RequestParam* out) {
  size_t eq = v.find('=');
  if (eq == std::string_view::npos)
    return fmt::format("param {} has no '='; write it as name=value, e.g. power_limit_mw=250000", quoted(v));
  std::string_view name = v.substr(0, eq), value = v.substr(eq + 1);
  if (name.empty() || name.size() > kMaxParamNameLength || !(name[0] >= 'a' && name[0] <= 'z') ||
      !std::all_of(name.begin(), name.end(), [](char c) { return is_lower_alnum(c) || c == '_'; }))
    return fmt::format(
        "param name {} must be lowercase letters, digits and '_', starting with a letter, at most {} "
        "characters",
        quoted(name), kMaxParamNameLength);
  if (value.empty() || value.size() > kMaxParamValueLength ||
      !std::all_of(value.begin(), value.end(), [](char c) { return c > 0x20 && c < 0x7f; }))
    return fmt::format("param {} value {} must be 1 to {} printable ASCII characters without spaces", name,
                       quoted(value), kMaxParamValueLength);
  if (out) *out = {std::string(name), std::string(value)};
  return std::nullopt;
}

Problem check_nonce(std::string_view v) {
  if (v.size() != kNonceHexDigits || !std::all_of(v.begin(), v.end(), is_lower_hex))
    return fmt::format("nonce {} must be the {} lowercase hex digits the daemon issued; copy it exactly", quoted(v),
                       kNonceHexDigits);
  return std::nullopt;
}

Problem check_requester(std::string_view v) {
  if (v.size() > kMaxRequesterLength || !std::all_of(v.begin(), v.end(), [](char c) {
        return is_alnum(c) || c == '.' || c == '_' || c == '@' || c == '+' || c == '-';
      }))
    return fmt::format("requester {} may hold only letters, digits and . _ @ + - (at most {}), e.g. alice@example.org",
                       quoted(v), kMaxRequesterLength);
  return std::nullopt;
}

Problem check_reason(std::string_view v) {
  if (v.size() > kMaxReasonLength) return fmt::format("reason is longer than {} bytes; shorten it", kMaxReasonLength);
  if (auto bad = bad_characters(v)) return "reason: " + *bad;
  return std::nullopt;
}

Problem check_value(Field f, std::string_view v) {
  if (v.empty()) return std::string("empty value");
  if (v.front() == ' ' || v.back() == ' ')
    return std::string("spaces before or after the value; write exactly one space after the colon and none at the end");
  switch (f) {
    case Field::kHost: return check_host(v);
    case Field::kGpu: {
      auto kind = classify_gpu_ref(v);
      if (!kind) return kind.error().message;
      return std::nullopt;
    }
    case Field::kClass: return check_class(v);
    case Field::kParam: return check_param(v, nullptr);
    case Field::kScope: {
      auto scope = parse_scope(v);
      if (!scope) return scope.error().message;
      return std::nullopt;
    }
    case Field::kNotBefore:
    case Field::kNotAfter: {
      auto t = parse_request_time(v);
      if (!t) return t.error().message;
      return std::nullopt;
    }
    case Field::kNonce: return check_nonce(v);
    case Field::kRequester: return check_requester(v);
    case Field::kReason: return check_reason(v);
  }
  return std::nullopt;
}

const FieldInfo* find_field(std::string_view key) {
  for (const auto& f : kFields)
    if (f.key == key) return &f;
  return nullptr;
}

size_t order_of(Field f) { return static_cast<size_t>(f); }

std::string missing_hint(Field f) {
  if (f == Field::kScope)
    return fmt::format(
        "every request names the processes that may use its grant, after the param lines: scope: {} "
        "(gpugate request new --scope writes it)",
        kScopeForms);
  return fmt::format("the fields are, in order: {}", kFieldOrder);
}

// A cgroup path from the hierarchy's root: "/a/b", no empty, "." or ".."
// component, printable ASCII without spaces.
Problem check_cgroup_path(std::string_view path) {
  auto bad = [&](std::string_view why) {
    return fmt::format(
        "cgroup path {} {}; write the cgroup v2 path from the root of the hierarchy, e.g. "
        "cgroup=/system.slice/train.service (the directory /sys/fs/cgroup/system.slice/train.service)",
        quoted(path), why);
  };
  if (path.empty() || path[0] != '/') return bad("does not start with '/'");
  if (path == "/") return bad("is the root cgroup, which holds every process not placed elsewhere; use scope: any");
  if (path.size() > kMaxCgroupPathLength) return bad(fmt::format("is longer than {} bytes", kMaxCgroupPathLength));
  if (path.starts_with("/sys/fs/cgroup/")) return bad("names the mount point; leave out /sys/fs/cgroup");
  std::string_view rest = path.substr(1);
  while (true) {
    size_t slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    if (part.empty()) return bad(slash == std::string_view::npos ? "ends with '/'" : "has an empty component ('//')");
    if (part == "." || part == "..") return bad("has a '.' or '..' component");
    if (!std::all_of(part.begin(), part.end(), [](char c) { return c > 0x20 && c < 0x7f; }))
      return bad("holds a space or a character that is not printable ASCII");
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return std::nullopt;
}

// A systemd unit name (systemd.unit(5)): letters, digits, ":-_.\\", '@' for
// instances; a .service or .scope, not a template.
Problem check_unit_name(std::string_view unit) {
  auto bad = [&](std::string_view why) {
    return fmt::format(
        "unit {} {}; name a system service or scope as systemctl lists it, e.g. unit=train.service or "
        "unit=worker@3.service",
        quoted(unit), why);
  };
  if (unit.size() > kMaxUnitNameLength) return bad(fmt::format("is longer than {} characters", kMaxUnitNameLength));
  std::string_view stem;
  if (unit.ends_with(".service"))
    stem = unit.substr(0, unit.size() - 8);
  else if (unit.ends_with(".scope"))
    stem = unit.substr(0, unit.size() - 6);
  else
    return bad("is not a .service or .scope (a slice or other unit holds no processes of its own)");
  if (stem.empty()) return bad("has no name before its suffix");
  if (!std::all_of(stem.begin(), stem.end(), [](char c) {
        return is_alnum(c) || c == ':' || c == '-' || c == '_' || c == '.' || c == '\\' || c == '@';
      }))
    return bad("holds a character systemd does not allow in unit names (letters, digits, : - _ . \\ @)");
  if (stem.back() == '@') return bad("is a template; name an instance, e.g. worker@3.service");
  if (std::count(stem.begin(), stem.end(), '@') > 1) return bad("has more than one '@'");
  return std::nullopt;
}

}  // namespace

std::string RequestScope::cgroup_path() const {
  switch (kind) {
    case ScopeKind::kCgroup: return name;
    case ScopeKind::kUnit: return "/system.slice/" + name;
    case ScopeKind::kAny:
    case ScopeKind::kUid: break;
  }
  return {};
}

std::string format_scope(const RequestScope& s) {
  switch (s.kind) {
    case ScopeKind::kAny: return "any";
    case ScopeKind::kUid: return fmt::format("uid={}", s.uid);
    case ScopeKind::kCgroup: return "cgroup=" + s.name;
    case ScopeKind::kUnit: return "unit=" + s.name;
  }
  return "any";
}

Result<RequestScope> parse_scope(std::string_view v) {
  RequestScope out;
  if (v == "any") return out;
  if (v.starts_with("uid=")) {
    std::string_view n = v.substr(4);
    if (n.empty() || n.size() > 10 || !std::all_of(n.begin(), n.end(), is_digit) || (n.size() > 1 && n[0] == '0'))
      return make_error(
          fmt::format("{}: a uid is a decimal number without leading zeros, e.g. uid=1000 (gpugate request new "
                      "--scope uid=NAME looks the number up)",
                      quoted(v)));
    uint64_t uid = std::stoull(std::string(n));
    if (uid > kMaxUid) return make_error(fmt::format("{}: no uid is above {}", quoted(v), kMaxUid));
    out.kind = ScopeKind::kUid;
    out.uid = static_cast<uint32_t>(uid);
    return out;
  }
  if (v.starts_with("cgroup=")) {
    if (auto bad = check_cgroup_path(v.substr(7))) return make_error(*bad);
    out.kind = ScopeKind::kCgroup;
    out.name = std::string(v.substr(7));
    return out;
  }
  if (v.starts_with("unit=")) {
    if (auto bad = check_unit_name(v.substr(5))) return make_error(*bad);
    out.kind = ScopeKind::kUnit;
    out.name = std::string(v.substr(5));
    return out;
  }
  return make_error(fmt::format("{} is none of the four forms of a scope; write {}", quoted(v), kScopeForms));
}

std::string exec_cgroup_path(std::string_view nonce) { return fmt::format("/gpugate-exec/{}", nonce); }

Result<int64_t> parse_duration(std::string_view text) {
  auto bad = [&] {
    return make_error(
        fmt::format("duration {} is not a number followed by s, m, h or d (e.g. 90s, 15m, 1h, 2d)", quoted(text)));
  };
  if (text.size() < 2 || text.size() > 8) return bad();
  int64_t n = 0;
  for (char c : text.substr(0, text.size() - 1)) {
    if (!is_digit(c)) return bad();
    n = n * 10 + (c - '0');
  }
  switch (text.back()) {
    case 's': break;
    case 'm': n *= 60; break;
    case 'h': n *= 3600; break;
    case 'd': n *= 86400; break;
    default: return bad();
  }
  if (n <= 0) return make_error(fmt::format("duration {} must be positive", quoted(text)));
  return n;
}

std::string format_duration(int64_t s) {
  if (s > 0 && s % 86400 == 0) return fmt::format("{}d", s / 86400);
  if (s > 0 && s % 3600 == 0) return fmt::format("{}h", s / 3600);
  if (s > 0 && s % 60 == 0) return fmt::format("{}m", s / 60);
  return fmt::format("{}s", s);
}

Result<GpuRefKind> classify_gpu_ref(std::string_view v) {
  if (v.starts_with("GPU-")) {
    // GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, as nvidia-smi -L prints it.
    std::string_view u = v.substr(4);
    bool shape = u.size() == 36;
    bool upper = false;
    for (size_t i = 0; shape && i < u.size(); i++) {
      bool dash = i == 8 || i == 13 || i == 18 || i == 23;
      if (dash ? u[i] != '-' : !is_hex(u[i])) shape = false;
      if (!dash && is_hex(u[i]) && !is_lower_hex(u[i])) upper = true;
    }
    if (!shape)
      return make_error(
          fmt::format("GPU UUID {} is not GPU- followed by 8-4-4-4-12 hex digits; copy it from "
                      "nvidia-smi -L",
                      quoted(v)));
    if (upper) return make_error(fmt::format("GPU UUID {} has uppercase hex; write it in lowercase", quoted(v)));
    return GpuRefKind::kUuid;
  }
  if (v.find(':') != std::string_view::npos) {
    // dddd:bb:dd.f, lowercase, full domain.
    bool shape = v.size() == 12 && v[4] == ':' && v[7] == ':' && v[10] == '.';
    bool upper = false;
    for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9, 11}) {
      if (!shape) break;
      if (!is_hex(v[i])) shape = false;
      if (is_hex(v[i]) && !is_lower_hex(v[i])) upper = true;
    }
    if (shape && (v[11] > '7' || !is_digit(v[11]))) shape = false;
    if (shape && std::stoi(std::string(v.substr(8, 2)), nullptr, 16) > 0x1f) shape = false;
    if (!shape)
      return make_error(
          fmt::format("PCI address {} is not domain:bus:device.function as in 0000:3b:00.0 (device at "
                      "most 1f, function 0-7); copy it from lspci -D",
                      quoted(v)));
    if (upper) return make_error(fmt::format("PCI address {} has uppercase hex; write it in lowercase", quoted(v)));
    return GpuRefKind::kPciAddress;
  }
  if (!v.empty() && v.size() <= 3 && std::all_of(v.begin(), v.end(), is_digit)) {
    if (v.size() > 1 && v[0] == '0')
      return make_error(
          fmt::format("GPU index {} has a leading zero; write it as {}", quoted(v), std::stoi(std::string(v))));
    if (static_cast<unsigned>(std::stoi(std::string(v))) <= kMaxGpuIndex) return GpuRefKind::kIndex;
  }
  return make_error(
      fmt::format("GPU {} is not a GPU UUID (GPU-...), a PCI address (0000:3b:00.0) or an index "
                  "(0-{}); see gpugate devices",
                  quoted(v), kMaxGpuIndex));
}

Result<int64_t> parse_request_time(std::string_view v) {
  auto bad = [&](std::string_view why) {
    return make_error(
        fmt::format("time {} {}; write UTC as YYYY-MM-DDTHH:MM:SSZ, e.g. 2026-11-28T09:40:00Z", quoted(v), why));
  };
  if (v.size() != 20 || v[4] != '-' || v[7] != '-' || v[10] != 'T' || v[13] != ':' || v[16] != ':' || v[19] != 'Z')
    return bad("is not in the form YYYY-MM-DDTHH:MM:SSZ (UTC, whole seconds)");
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18})
    if (!is_digit(v[i])) return bad("has a non-digit where a digit belongs");
  auto num = [&](size_t at, size_t n) {
    unsigned x = 0;
    for (size_t i = 0; i < n; i++) x = x * 10 + static_cast<unsigned>(v[at + i] - '0');
    return x;
  };
  unsigned year = num(0, 4), month = num(5, 2), day = num(8, 2), hour = num(11, 2), minute = num(14, 2),
           second = num(17, 2);
  if (year < 1970) return bad("is before 1970");
  if (month < 1 || month > 12) return bad("has no such month");
  if (day < 1 || day > days_in_month(year, month)) return bad("has no such day in that month");
  if (hour > 23 || minute > 59 || second > 59) return bad("has no such time of day");
  return days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
}

std::string format_request_time(int64_t t) {
  int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
  int64_t secs = t - days * 86400;
  // civil_from_days (Hinnant).
  int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  const int64_t y = static_cast<int64_t>(yoe) + era * 400 + (m <= 2);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", y, m, d, secs / 3600, secs / 60 % 60, secs % 60);
}

Result<AuthRequest> parse_request(std::string_view text, std::string_view name) {
  auto at = [&](size_t line, std::string_view why) { return make_error(fmt::format("{}:{}: {}", name, line, why)); };
  if (text.size() > kMaxRequestBytes)
    return make_error(fmt::format("{}: {} bytes; a request is at most {} bytes (shorten the reason)", name, text.size(),
                                  kMaxRequestBytes));
  if (text.empty()) return make_error(fmt::format("{}: empty file; write a request with gpugate request new", name));

  AuthRequest req;
  std::array<size_t, kFields.size()> seen_on{};  // line where each field appeared, 0: not yet
  size_t next = 0;                               // index into kFields of the next field allowed
  size_t line_no = 0;
  size_t pos = 0;
  bool done = false;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    line_no++;
    if (nl == std::string_view::npos)
      return at(line_no, "the last line has no newline at its end; end the file with a newline");
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (auto bad = bad_characters(line)) return at(line_no, *bad);
    if (line_no == 1) {
      if (line != kRequestHeader) {
        if (line.starts_with("gpugate-request v"))
          return at(1,
                    fmt::format("format {} is not supported; this gpugate reads '{}'", quoted(line), kRequestHeader));
        return at(
            1, fmt::format("expected '{}' as the first line; make requests with gpugate request new", kRequestHeader));
      }
      continue;
    }
    if (done)
      return at(line_no, "text after the reason line; the request ends with the reason (one line, then the end)");
    if (line.empty()) return at(line_no, "empty line; a request has none");
    size_t colon = line.find(':');
    std::string_view key = line.substr(0, colon);
    const FieldInfo* field = colon == std::string_view::npos ? nullptr : find_field(key);
    if (!field)
      return at(line_no, fmt::format("unknown field {}; the fields are, in order: {}",
                                     quoted(colon == std::string_view::npos ? line : key), kFieldOrder));
    if (line.size() < colon + 2 || line[colon + 1] != ' ')
      return at(line_no, fmt::format("write the field as '{}: value' (one space after the colon)", key));
    std::string_view value = line.substr(colon + 2);
    size_t idx = order_of(field->field);
    if (field->field != Field::kParam && seen_on[idx])
      return at(line_no, fmt::format("duplicate field '{}' (first on line {}); keep one", key, seen_on[idx]));
    if (idx < next) return at(line_no, fmt::format("field '{}' is out of order; the order is: {}", key, kFieldOrder));
    for (size_t k = next; k < idx; k++)
      if (kFields[k].field != Field::kParam)
        return at(line_no, fmt::format("field '{}' is missing before '{}'; {}", kFields[k].key, key,
                                       missing_hint(kFields[k].field)));
    if (auto problem = check_value(field->field, value)) return at(line_no, fmt::format("{}: {}", key, *problem));
    seen_on[idx] = line_no;
    next = field->field == Field::kParam ? idx : idx + 1;  // params repeat
    switch (field->field) {
      case Field::kHost: req.host = std::string(value); break;
      case Field::kGpu: req.gpu = std::string(value); break;
      case Field::kClass: req.class_name = std::string(value); break;
      case Field::kParam: {
        RequestParam p;
        (void)check_param(value, &p);
        if (!req.params.empty() && p.name <= req.params.back().name)
          return at(line_no, p.name == req.params.back().name
                                 ? fmt::format("param '{}' given twice; keep one", p.name)
                                 : fmt::format("param '{}' comes after '{}'; sort param lines by name", p.name,
                                               req.params.back().name));
        req.params.push_back(std::move(p));
        break;
      }
      case Field::kScope: req.scope = *parse_scope(value); break;
      case Field::kNotBefore: req.not_before = *parse_request_time(value); break;
      case Field::kNotAfter:
        req.not_after = *parse_request_time(value);
        if (req.not_after <= req.not_before)
          return at(line_no, fmt::format("not-after {} is not later than not-before {}; the window must be "
                                         "non-empty",
                                         value, format_request_time(req.not_before)));
        break;
      case Field::kNonce: req.nonce = std::string(value); break;
      case Field::kRequester: req.requester = std::string(value); break;
      case Field::kReason:
        req.reason = std::string(value);
        done = true;
        break;
    }
  }
  for (size_t k = next; k < kFields.size(); k++)
    if (kFields[k].field != Field::kParam && !seen_on[k])
      return make_error(fmt::format("{}: field '{}' is missing (the request ends at line {}); {}", name, kFields[k].key,
                                    line_no, missing_hint(kFields[k].field)));
  return req;
}

std::string render_request(const AuthRequest& r) {
  std::string out = std::string(kRequestHeader) + "\n";
  out += fmt::format("host: {}\ngpu: {}\nclass: {}\n", r.host, r.gpu, r.class_name);
  for (const auto& p : r.params) out += fmt::format("param: {}={}\n", p.name, p.value);
  out += fmt::format("scope: {}\n", format_scope(r.scope));
  out +=
      fmt::format("not-before: {}\nnot-after: {}\nnonce: {}\nrequester: {}\nreason: {}\n",
                  format_request_time(r.not_before), format_request_time(r.not_after), r.nonce, r.requester, r.reason);
  return out;
}

Result<void> validate_request(const AuthRequest& r) {
  // The text is the definition: render it and read it back, field by field.
  if (r.not_before < 0 || r.not_after < 0 || r.not_before > 253402300799 || r.not_after > 253402300799)
    return make_error("not-before and not-after must lie between 1970 and 9999");
  std::string text = render_request(r);
  auto parsed = parse_request(text, "request");
  if (!parsed) return parsed.error();
  if (!(*parsed == r))
    return make_error("a field holds a newline or other text that does not survive rendering; remove it");
  return {};
}

Result<void> check_request_scope(const AuthRequest& req, std::string_view host_id, std::span<const std::string> gpu_ids,
                                 int64_t now) {
  if (req.host != host_id)
    return make_error(
        fmt::format("the request is for host {}, but this is host {}; ask for a request made for this "
                    "host",
                    req.host, host_id));
  if (std::find(gpu_ids.begin(), gpu_ids.end(), req.gpu) == gpu_ids.end()) {
    std::string names;
    for (const auto& g : gpu_ids) names += fmt::format("{}{}", names.empty() ? "" : ", ", g);
    return make_error(
        fmt::format("the request names GPU {}, but the command targets the GPU known as {}; ask for a "
                    "request that names this GPU",
                    req.gpu, names.empty() ? "(no name)" : names));
  }
  if (now < req.not_before)
    return make_error(
        fmt::format("the request is not valid yet: not-before {}, now {} ({} s early); wait, or ask "
                    "for a request with an earlier not-before",
                    format_request_time(req.not_before), format_request_time(now), req.not_before - now));
  if (now >= req.not_after)
    return make_error(fmt::format("the request expired at {} (not-after), now {}; ask for a new request",
                                  format_request_time(req.not_after), format_request_time(now)));
  return {};
}

}  // namespace gpugate::auth
