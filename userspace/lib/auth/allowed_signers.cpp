// allowed_signers as ssh-keygen(1) documents it (section ALLOWED SIGNERS):
// the same line syntax, pattern lists, options and time formats, so one
// file serves both gpugate and `ssh-keygen -Y verify`.
#include "gpugate/allowed_signers.hpp"

#include <time.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "gpugate/request.hpp"
#include "wire.hpp"

namespace gpugate::auth {
namespace {

constexpr size_t kMaxFileBytes = 4 * 1024 * 1024;

bool is_space(char c) { return c == ' ' || c == '\t'; }

// OpenSSH's match_pattern: '*' any run, '?' any one character.
bool match_pattern(std::string_view s, std::string_view p) {
  size_t si = 0, pi = 0, star_p = std::string_view::npos, star_s = 0;
  while (si < s.size()) {
    if (pi < p.size() && p[pi] == '*') {  // a '*' is a wildcard, also against a '*'
      star_p = pi++;
      star_s = si;
    } else if (pi < p.size() && (p[pi] == '?' || p[pi] == s[si])) {
      si++, pi++;
    } else if (star_p != std::string_view::npos) {
      pi = star_p + 1;
      si = ++star_s;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') pi++;
  return pi == p.size();
}

bool looks_like_key_type(std::string_view t) {
  return t == "ssh-ed25519" || t == "ssh-rsa" || t == "ssh-dss" || t.starts_with("ecdsa-sha2-") ||
         t.starts_with("sk-") || t.ends_with("-cert-v01@openssh.com");
}

std::string quoted(std::string_view s) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < 80; i++) {
    auto c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7f) ? std::string(1, static_cast<char>(c)) : fmt::format("\\x{:02x}", c);
  }
  return out + (s.size() > 80 ? "...'" : "'");
}

// Splits off the next whitespace-delimited word.
std::string_view next_word(std::string_view& rest) {
  size_t end = 0;
  while (end < rest.size() && !is_space(rest[end])) end++;
  std::string_view word = rest.substr(0, end);
  rest.remove_prefix(end);
  while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
  return word;
}

// Options run up to the first space or tab outside double quotes.
Result<std::string_view> next_options(std::string_view& rest) {
  bool in_quotes = false;
  size_t i = 0;
  for (; i < rest.size(); i++) {
    if (rest[i] == '\\' && in_quotes && i + 1 < rest.size() && rest[i + 1] == '"') {
      i++;
    } else if (rest[i] == '"') {
      in_quotes = !in_quotes;
    } else if (is_space(rest[i]) && !in_quotes) {
      break;
    }
  }
  if (in_quotes) return make_error("an option value has no closing double quote");
  std::string_view opts = rest.substr(0, i);
  rest.remove_prefix(i);
  while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
  return opts;
}

// keyword="value" with \" inside; consumes it from opts.
Result<std::string> dequote(std::string_view& opts, std::string_view keyword) {
  if (opts.empty() || opts.front() != '"')
    return make_error(fmt::format("{}= needs its value in double quotes, e.g. {}=\"...\"", keyword, keyword));
  std::string value;
  size_t i = 1;
  for (; i < opts.size() && opts[i] != '"'; i++) {
    if (opts[i] == '\\' && i + 1 < opts.size() && opts[i + 1] == '"') i++;
    value.push_back(opts[i]);
  }
  if (i >= opts.size()) return make_error(fmt::format("{}= value has no closing double quote", keyword));
  opts.remove_prefix(i + 1);
  return value;
}

bool starts_with_keyword(std::string_view opts, std::string_view keyword) {
  if (opts.size() < keyword.size()) return false;
  for (size_t i = 0; i < keyword.size(); i++)
    if (std::tolower(static_cast<unsigned char>(opts[i])) != keyword[i]) return false;
  return true;
}

Result<void> parse_options(std::string_view opts, AllowedSigner& entry) {
  while (!opts.empty()) {
    if (starts_with_keyword(opts, "cert-authority") && (opts.size() == 14 || opts[14] == ',')) {
      return make_error(
          "cert-authority is not supported: gpugate verifies each operator's own key, not "
          "certificates; list the operators' keys instead of the CA key");
    }
    bool matched = false;
    for (std::string_view keyword : {"namespaces", "valid-after", "valid-before"}) {
      if (!starts_with_keyword(opts, keyword) || opts.size() <= keyword.size() || opts[keyword.size()] != '=') continue;
      matched = true;
      opts.remove_prefix(keyword.size() + 1);
      auto value = dequote(opts, keyword);
      if (!value) return value.error();
      if (keyword == "namespaces") {
        if (entry.namespaces) return make_error("namespaces= is given twice; merge them into one list");
        entry.namespaces = *value;
      } else {
        auto& slot = keyword == "valid-after" ? entry.valid_after : entry.valid_before;
        if (slot) return make_error(fmt::format("{}= is given twice; keep one", keyword));
        auto t = parse_openssh_time(*value);
        if (!t) return make_error(fmt::format("{}=: {}", keyword, t.error().message));
        slot = *t;
      }
      break;
    }
    if (!matched) {
      std::string_view word = opts.substr(0, std::min(opts.find_first_of(",="), opts.size()));
      return make_error(
          fmt::format("unsupported option {}; allowed_signers options are namespaces=, valid-after=, "
                      "valid-before= (cert-authority is refused)",
                      quoted(word)));
    }
    if (!opts.empty()) {
      if (opts.front() != ',')
        return make_error(fmt::format("unexpected {} after an option; separate options with commas", quoted(opts)));
      opts.remove_prefix(1);
    }
  }
  if (entry.valid_after && entry.valid_before && *entry.valid_before <= *entry.valid_after)
    return make_error("valid-before is not later than valid-after; the key would never be valid");
  return {};
}

Result<AllowedSigner> parse_line(std::string_view line) {
  AllowedSigner entry;
  std::string_view rest = line;
  // Principals: one word, or a double-quoted string (which may hold spaces).
  if (rest.front() == '"') {
    size_t close = rest.find('"', 1);
    if (close == std::string_view::npos) return make_error("the quoted principals have no closing double quote");
    entry.principals = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty() && !is_space(rest.front()))
      return make_error("text right after the quoted principals; put a space before the key");
    while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
  } else {
    entry.principals = std::string(next_word(rest));
  }
  if (entry.principals.empty())
    return make_error("empty principals; write who the key belongs to, e.g. alice@example.org");
  if (rest.empty()) return make_error("only principals on this line; write principals [options] keytype base64-key");

  std::string_view probe = rest;
  std::string_view first = next_word(probe);
  if (!looks_like_key_type(first)) {
    auto opts = next_options(rest);
    if (!opts) return opts.error();
    if (auto parsed = parse_options(*opts, entry); !parsed) return parsed.error();
    if (rest.empty()) return make_error("options but no key; write principals [options] keytype base64-key");
  }
  std::string_view type = next_word(rest);
  std::string_view base64 = next_word(rest);
  if (base64.empty()) return make_error(fmt::format("key type {} but no base64 key after it", quoted(type)));
  // Whatever follows is the key's comment.
  auto key = parse_public_key_text(type, base64);
  if (!key) return key.error();
  entry.key = std::move(*key);
  return entry;
}

}  // namespace

bool match_pattern_list(std::string_view text, std::string_view patterns) {
  bool positive = false;
  while (true) {
    size_t comma = patterns.find(',');
    std::string_view sub = patterns.substr(0, comma);
    bool negated = !sub.empty() && sub.front() == '!';
    if (negated) sub.remove_prefix(1);
    if (match_pattern(text, sub)) {
      if (negated) return false;
      positive = true;
    }
    if (comma == std::string_view::npos) break;
    patterns.remove_prefix(comma + 1);
  }
  return positive;
}

bool AllowedSigner::matches_principal(std::string_view principal) const {
  return match_pattern_list(principal, principals);
}

std::vector<std::string> AllowedSigner::principal_list() const {
  std::vector<std::string> out;
  std::string_view rest = principals;
  while (true) {
    size_t comma = rest.find(',');
    out.emplace_back(rest.substr(0, comma));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

Result<int64_t> parse_openssh_time(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return make_error(
        fmt::format("time {} {}; write YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, with a Z for UTC", quoted(text), why));
  };
  std::string_view digits = text;
  bool utc = false;
  if (digits.size() > 1 && (digits.back() == 'Z' || digits.back() == 'z')) {
    utc = true;
    digits.remove_suffix(1);
  } else if (digits.size() > 3) {
    std::string tail(digits.substr(digits.size() - 3));
    std::transform(tail.begin(), tail.end(), tail.begin(), [](unsigned char c) { return std::toupper(c); });
    if (tail == "UTC") {
      utc = true;
      digits.remove_suffix(3);
    }
  }
  if (digits.size() != 8 && digits.size() != 12 && digits.size() != 14) return bad("has the wrong length");
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return bad("holds a character that is not a digit");
  auto num = [&](size_t at, size_t n) {
    unsigned x = 0;
    for (size_t i = 0; i < n; i++) x = x * 10 + static_cast<unsigned>(digits[at + i] - '0');
    return x;
  };
  unsigned year = num(0, 4), month = num(4, 2), day = num(6, 2);
  unsigned hour = digits.size() >= 12 ? num(8, 2) : 0, minute = digits.size() >= 12 ? num(10, 2) : 0;
  unsigned second = digits.size() == 14 ? num(12, 2) : 0;
  if (year < 1970 || month < 1 || month > 12 || day < 1 || day > wire::days_in_month(year, month) || hour > 23 ||
      minute > 59 || second > 59)
    return bad("is not a valid date and time");
  if (utc) return wire::days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
  tm t{};
  t.tm_year = static_cast<int>(year) - 1900;
  t.tm_mon = static_cast<int>(month) - 1;
  t.tm_mday = static_cast<int>(day);
  t.tm_hour = static_cast<int>(hour);
  t.tm_min = static_cast<int>(minute);
  t.tm_sec = static_cast<int>(second);
  t.tm_isdst = -1;
  time_t local = mktime(&t);
  if (local < 0) return bad("is not a valid local time");
  return static_cast<int64_t>(local);
}

Result<AllowedSigners> AllowedSigners::parse(std::string_view text, std::string_view name) {
  AllowedSigners out;
  out.name_ = std::string(name);
  if (text.size() > kMaxFileBytes)
    return make_error(fmt::format("{}: {} bytes is more than the {} an allowed signers file may have", name,
                                  text.size(), kMaxFileBytes));
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    line_no++;
    auto at = [&](const std::string& why) { return make_error(fmt::format("{}:{}: {}", name, line_no, why)); };
    for (char c : line) {
      if (c == '\r') return at("carriage return (CRLF line ends); save the file with Unix line ends (dos2unix)");
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
        return at(fmt::format("control character {:#04x}; remove it", static_cast<unsigned char>(c)));
    }
    while (!line.empty() && is_space(line.front())) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    auto entry = parse_line(line);
    if (!entry) return at(entry.error().message);
    entry->source = fmt::format("{}:{}", name, line_no);
    out.entries_.push_back(std::move(*entry));
  }
  return out;
}

Result<AllowedSigners> AllowedSigners::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return make_error(fmt::format("cannot open allowed signers file {}: {}; check the path and its permissions", path,
                                  std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error(fmt::format("cannot read allowed signers file {}", path));
  return parse(ss.str(), path);
}

Result<std::vector<AllowedSigner>> AllowedSigners::find(const PublicKey& key, std::string_view sig_namespace,
                                                        int64_t when) const {
  std::vector<AllowedSigner> good;
  std::vector<std::string> reasons;
  for (const auto& e : entries_) {
    if (!(e.key == key)) continue;
    if (e.namespaces && !match_pattern_list(sig_namespace, *e.namespaces)) {
      reasons.push_back(fmt::format("{} lets it sign only in namespaces=\"{}\", not {}", e.source, *e.namespaces,
                                    quoted(sig_namespace)));
    } else if (e.valid_after && when < *e.valid_after) {
      reasons.push_back(fmt::format("{} makes it valid only from {} (valid-after), and the time checked is {}",
                                    e.source, format_request_time(*e.valid_after), format_request_time(when)));
    } else if (e.valid_before && when > *e.valid_before) {
      reasons.push_back(fmt::format("{} made it valid only until {} (valid-before), and the time checked is {}",
                                    e.source, format_request_time(*e.valid_before), format_request_time(when)));
    } else {
      good.push_back(e);
    }
  }
  if (!good.empty()) return good;
  if (reasons.empty())
    return make_error(fmt::format("key {} ({}) is not in {}; if it may sign, add a line: PRINCIPAL {}",
                                  key.fingerprint(), key.short_type(), name_, key.to_openssh()));
  std::string all;
  for (const auto& r : reasons) all += (all.empty() ? "" : "; ") + r;
  return make_error(fmt::format("key {} ({}) may not sign here: {}", key.fingerprint(), key.short_type(), all));
}

}  // namespace gpugate::auth
