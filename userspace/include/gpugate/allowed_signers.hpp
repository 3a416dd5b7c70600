// OpenSSH allowed_signers (ssh-keygen(1), section ALLOWED SIGNERS): which
// keys may sign, for which principals, in which namespaces, when.
//
//   # comment
//   alice@example.org,alice@corp namespaces="gpugate-request@gpugate.dev",valid-before="20270101Z" ssh-ed25519 AAAA...
//   laptop
//
// Principals are a comma-separated pattern list ('*', '?', '!' negation), as
// are namespaces=. valid-after=/valid-before= take YYYYMMDD[Z],
// YYYYMMDDHHMM[Z] or YYYYMMDDHHMMSS[Z] (local time without Z, as OpenSSH).
// cert-authority is refused: gpugate verifies plain keys only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gpugate/result.hpp"
#include "gpugate/sshsig.hpp"

namespace gpugate::auth {

struct AllowedSigner {
  std::string source;                     // "file:line"
  std::string principals;                 // the pattern list as written
  std::optional<std::string> namespaces;  // pattern list; none: every namespace
  std::optional<int64_t> valid_after;     // Unix seconds; inclusive bounds, as OpenSSH
  std::optional<int64_t> valid_before;
  PublicKey key;

  // Whether principal (an identity such as "alice@example.org") matches this
  // line's principal patterns, as ssh-keygen -Y verify -I does.
  bool matches_principal(std::string_view principal) const;
  // The patterns, split at commas.
  std::vector<std::string> principal_list() const;
};

// OpenSSH pattern-list matching (match_pattern_list): comma-separated
// patterns with '*' and '?'; a pattern starting with '!' that matches
// refuses. Case-sensitive.
bool match_pattern_list(std::string_view text, std::string_view patterns);

// Parses an OpenSSH time as allowed_signers uses it. Without a trailing Z
// the time is local, as OpenSSH reads it.
Result<int64_t> parse_openssh_time(std::string_view text);

class AllowedSigners {
 public:
  // name is used in errors ("allowed_signers:3: ..."). The whole file is
  // refused if one line is bad: a trust file that says something else than
  // its author meant is worse than none.
  static Result<AllowedSigners> parse(std::string_view text, std::string_view name);
  static Result<AllowedSigners> load(const std::string& path);

  const std::vector<AllowedSigner>& entries() const { return entries_; }

  // The lines that let this key sign in this namespace at this time. When
  // none does, the error says why for each line that lists the key (namespace
  // not allowed, not yet valid, expired), or that no line lists it.
  Result<std::vector<AllowedSigner>> find(const PublicKey& key, std::string_view sig_namespace, int64_t when) const;

 private:
  std::string name_;
  std::vector<AllowedSigner> entries_;
};

}  // namespace gpugate::auth
