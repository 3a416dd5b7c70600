#include "gpugate/authorize.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "gpugate/sshsig.hpp"

namespace gpugate::auth {
namespace {

struct CountedKey {
  std::string fingerprint;
  std::vector<AllowedSigner> lines;  // allowed_signers lines that let it sign
};

// Kuhn's augmenting paths: credit each key to at most one principal and
// each principal to at most one key, as many pairs as possible.
bool augment(size_t key, const std::vector<std::vector<size_t>>& edges, std::vector<bool>& visited,
             std::vector<long>& principal_to_key) {
  for (size_t p : edges[key]) {
    if (visited[p]) continue;
    visited[p] = true;
    if (principal_to_key[p] < 0 ||
        augment(static_cast<size_t>(principal_to_key[p]), edges, visited, principal_to_key)) {
      principal_to_key[p] = static_cast<long>(key);
      return true;
    }
  }
  return false;
}

GroupResult evaluate_group(const SignerGroup& group, const std::vector<CountedKey>& keys) {
  GroupResult out{group.name, group.threshold, group.break_glass, false, {}, {}};
  if (auto valid = validate_signer_group(group); !valid) {
    out.explanation = fmt::format("group {} is not usable: {}", group.name, valid.error().message);
    return out;
  }
  std::vector<std::vector<size_t>> edges(keys.size());
  for (size_t k = 0; k < keys.size(); k++)
    for (size_t p = 0; p < group.principals.size(); p++)
      if (std::any_of(keys[k].lines.begin(), keys[k].lines.end(),
                      [&](const AllowedSigner& line) { return line.matches_principal(group.principals[p]); }))
        edges[k].push_back(p);
  std::vector<long> principal_to_key(group.principals.size(), -1);
  for (size_t k = 0; k < keys.size(); k++) {
    std::vector<bool> visited(group.principals.size(), false);
    augment(k, edges, visited, principal_to_key);
  }
  std::string who;
  for (size_t p = 0; p < group.principals.size(); p++) {
    if (principal_to_key[p] < 0) continue;
    const auto& fp = keys[static_cast<size_t>(principal_to_key[p])].fingerprint;
    out.credited.emplace_back(group.principals[p], fp);
    who += fmt::format("{}{} ({})", who.empty() ? "" : ", ", group.principals[p], fp);
  }
  auto count = static_cast<unsigned>(out.credited.size());
  out.met = count >= group.threshold;
  std::string label =
      group.break_glass ? fmt::format("break-glass group {}", group.name) : fmt::format("group {}", group.name);
  if (out.met)
    out.explanation = fmt::format("{}: {} of {} met by {}", label, count, group.threshold, who);
  else
    out.explanation = fmt::format(
        "{}: {} of {}, short by {}{}{}; more members of the group must sign (one "
        "signature per person, each with their own key)",
        label, count, group.threshold, group.threshold - count, who.empty() ? "" : ": ", who);
  return out;
}

}  // namespace

Result<void> validate_signer_group(const SignerGroup& g) {
  if (g.name.empty() || !std::all_of(g.name.begin(), g.name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
      }))
    return make_error(fmt::format("signer group name '{}' must be letters, digits, '-', '_' or '.'", g.name));
  if (g.principals.empty()) return make_error(fmt::format("signer group {} lists no principals", g.name));
  if (g.threshold < 1 || g.threshold > g.principals.size())
    return make_error(fmt::format("signer group {} needs {} of {} principals; the threshold must be 1 to {}", g.name,
                                  g.threshold, g.principals.size(), g.principals.size()));
  std::set<std::string> seen;
  for (const auto& p : g.principals) {
    if (p.empty() || p.find_first_of("*?!, \t\"") != std::string::npos)
      return make_error(
          fmt::format("signer group {}: principal '{}' must be one identity such as "
                      "alice@example.org, without * ? ! , spaces or quotes",
                      g.name, p));
    if (!seen.insert(p).second)
      return make_error(fmt::format("signer group {} lists principal {} twice; list each person once", g.name, p));
  }
  return {};
}

Result<SignerGroup> parse_signer_group(std::string_view spec) {
  auto bad = [&](std::string why) {
    return make_error(
        fmt::format("signer group '{}': {}; write NAME:THRESHOLD:principal,principal,... e.g. "
                    "oncall:2:alice@example.org,bob@example.org",
                    spec, why));
  };
  size_t c1 = spec.find(':');
  size_t c2 = c1 == std::string_view::npos ? c1 : spec.find(':', c1 + 1);
  if (c2 == std::string_view::npos) return bad("two colons are needed");
  SignerGroup g;
  g.name = std::string(spec.substr(0, c1));
  std::string_view k = spec.substr(c1 + 1, c2 - c1 - 1);
  if (k.empty() || k.size() > 4 || !std::all_of(k.begin(), k.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return bad(fmt::format("threshold '{}' is not a number", k));
  g.threshold = static_cast<unsigned>(std::stoul(std::string(k)));
  std::string_view rest = spec.substr(c2 + 1);
  while (true) {
    size_t comma = rest.find(',');
    g.principals.emplace_back(rest.substr(0, comma));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  if (auto valid = validate_signer_group(g); !valid) return bad(valid.error().message);
  return g;
}

bool Authorization::all_signatures_good() const {
  return std::all_of(signatures.begin(), signatures.end(),
                     [](const SignatureCheck& s) { return s.counted || s.duplicate; });
}

std::vector<std::string> Authorization::verified_keys() const {
  std::vector<std::string> out;
  for (const auto& s : signatures)
    if (s.counted) out.push_back(s.key_fingerprint);
  return out;
}

const GroupResult* Authorization::authorizing_group() const {
  const GroupResult* found = nullptr;
  for (const auto& g : groups) {
    if (!g.met) continue;
    if (!g.break_glass) return &g;
    if (!found) found = &g;
  }
  return found;
}

std::string Authorization::summary() const {
  std::string out;
  for (const auto& s : signatures) {
    if (s.counted) {
      out += fmt::format(
          "signature {}: good, {} key {} for {} ({}){}\n", s.label, s.key_type, s.key_fingerprint,
          fmt::join(s.principals, " "), fmt::join(s.sources, ", "),
          s.security_key ? fmt::format(", security key flags {:#04x} counter {}", s.sk_flags, s.sk_counter) : "");
    } else {
      out += fmt::format("signature {}: {}: {}\n", s.label, s.duplicate ? "counted once" : "REJECTED", s.error);
    }
  }
  for (const auto& g : groups) out += g.explanation + "\n";
  if (groups.empty())
    out += quorum_met ? "no signer groups given: at least one good signature\n"
                      : "no signer groups given, and no good signature\n";
  return out;
}

Authorization authorize(std::string_view request_text, std::span<const SignatureInput> signatures,
                        const AllowedSigners& signers, std::string_view sig_namespace, int64_t when,
                        std::span<const SignerGroup> groups) {
  Authorization out;
  std::vector<CountedKey> keys;
  std::map<std::string, std::string> first_label;  // fingerprint -> label of its counted signature
  for (const auto& input : signatures) {
    SignatureCheck check;
    check.label = input.label;
    auto sig = parse_sshsig(input.armored);
    if (!sig) {
      check.error = sig.error().message;
      out.signatures.push_back(std::move(check));
      continue;
    }
    check.key_fingerprint = sig->key.fingerprint();
    check.key_type = std::string(sig->key.short_type());
    check.signature_algorithm = sig->signature_algorithm;
    check.hash_algorithm = sig->hash_algorithm;
    check.security_key = sig->key.is_security_key();
    check.sk_flags = sig->sk_flags;
    check.sk_counter = sig->sk_counter;
    // Trust first (cheap, and the more useful message for a stranger's
    // key), then the signature itself.
    auto lines = signers.find(sig->key, sig_namespace, when);
    if (!lines) {
      check.error = lines.error().message;
    } else if (auto verified = verify_sshsig(*sig, request_text, sig_namespace); !verified) {
      check.error = verified.error().message;
    } else {
      for (const auto& line : *lines) {
        check.principals.push_back(line.principals);
        check.sources.push_back(line.source);
      }
      auto [it, inserted] = first_label.emplace(check.key_fingerprint, check.label);
      if (inserted) {
        check.counted = true;
        keys.push_back({check.key_fingerprint, std::move(*lines)});
      } else {
        check.duplicate = true;
        check.error = fmt::format("key {} already signed as {}; a key counts once, however often it signs",
                                  check.key_fingerprint, it->second);
      }
    }
    out.signatures.push_back(std::move(check));
  }
  for (const auto& g : groups) out.groups.push_back(evaluate_group(g, keys));
  out.quorum_met = groups.empty()
                       ? !keys.empty()
                       : std::any_of(out.groups.begin(), out.groups.end(), [](const GroupResult& g) { return g.met; });
  return out;
}

}  // namespace gpugate::auth
