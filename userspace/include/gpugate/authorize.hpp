// Quorum over signed requests: which signatures verify, for which
// principals, and whether a signer group's threshold is met.
//
// A signature counts when it parses, its key is in allowed_signers for
// kSignatureNamespace at the time given, and it verifies over the exact
// request bytes. A group counts distinct keys, each credited to a different
// principal of the group: one key signing twice counts once, and one person
// with two keys listed counts once too (a maximum matching between the
// group's principals and the keys that signed).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gpugate/allowed_signers.hpp"
#include "gpugate/result.hpp"

namespace gpugate::auth {

// The SSHSIG namespace of gpugate requests: `ssh-keygen -Y sign -n` this.
inline constexpr std::string_view kSignatureNamespace = "gpugate-request@gpugate.dev";

struct SignerGroup {
  std::string name;
  std::vector<std::string> principals;  // literal identities, e.g. "alice@example.org"
  unsigned threshold = 1;
  bool break_glass = false;  // an emergency group; the daemon rate-limits and records it loudly
};

// Names, principals and threshold make sense: name non-empty, 1 <=
// threshold <= principals, principals distinct and without pattern
// characters (* ? ! ,).
Result<void> validate_signer_group(const SignerGroup& group);
// "NAME:K:principal,principal,..." as on the command line (--group).
Result<SignerGroup> parse_signer_group(std::string_view spec);

struct SignatureInput {
  std::string label;    // for messages: the file name, "signature 2"
  std::string armored;  // the .sig file's text
};

struct SignatureCheck {
  std::string label;
  bool counted = false;                 // good, trusted, and the first signature by its key
  bool duplicate = false;               // good, but its key already signed (counted once)
  std::string key_fingerprint;          // "SHA256:...", empty when the blob did not parse
  std::string key_type;                 // "ED25519", "ECDSA", "RSA", "ED25519-SK", "ECDSA-SK"
  std::string signature_algorithm;      // "ssh-ed25519", "rsa-sha2-512", ...
  std::string hash_algorithm;           // "sha512", "sha256"
  std::vector<std::string> principals;  // principal patterns of the allowed_signers lines that let it sign
  std::vector<std::string> sources;     // those lines, "file:line"
  bool security_key = false;
  uint8_t sk_flags = 0;
  uint32_t sk_counter = 0;
  std::string error;  // why it does not count; empty when counted
};

struct GroupResult {
  std::string name;
  unsigned threshold = 0;
  bool break_glass = false;
  bool met = false;
  // The principal each counted key was credited to: (principal, fingerprint).
  std::vector<std::pair<std::string, std::string>> credited;
  std::string explanation;  // one line: "2 of 2 met: ..." or "1 of 2, short by 1: ..."
};

struct Authorization {
  std::vector<SignatureCheck> signatures;
  std::vector<GroupResult> groups;
  // With groups: some group met its threshold. Without groups: at least one
  // signature counted.
  bool quorum_met = false;

  bool all_signatures_good() const;                // every signature counted or was a duplicate of one that did
  std::vector<std::string> verified_keys() const;  // distinct fingerprints that counted
  // The group that authorizes, preferring a regular group to a break-glass
  // one; nullptr when none is met (or there are no groups).
  const GroupResult* authorizing_group() const;
  // Several lines for people: each signature, then each group.
  std::string summary() const;
};

// Checks every signature (all are reported, none stops the others) over the
// exact request bytes, then the groups. when is the time for allowed_signers'
// valid-after/valid-before (now, or the decision time when re-checking).
Authorization authorize(std::string_view request_text, std::span<const SignatureInput> signatures,
                        const AllowedSigners& signers, std::string_view sig_namespace, int64_t when,
                        std::span<const SignerGroup> groups);

}  // namespace gpugate::auth
