// OpenSSH signatures (SSHSIG, what `ssh-keygen -Y sign` writes) and SSH
// public keys: strict parsing and verification with OpenSSL 3.
//
// Layout: openssh/openssh-portable PROTOCOL.sshsig (blob and signed data),
// PROTOCOL.u2f (sk- keys), RFC 4251/5656/8332/8709 (wire types); summarised
// in reference/log-and-signing.md section 2.1. Written from the specs, not
// from OpenSSH's code.
//
// Nothing here decides trust: verify_sshsig only says that the key inside the
// blob signed the message. Whether that key may sign is allowed_signers.hpp's
// question, and whether enough keys did is authorize.hpp's.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gpugate/result.hpp"

namespace gpugate::auth {

enum class KeyType {
  kEd25519,      // ssh-ed25519
  kEcdsaP256,    // ecdsa-sha2-nistp256
  kEcdsaP384,    // ecdsa-sha2-nistp384
  kEcdsaP521,    // ecdsa-sha2-nistp521
  kRsa,          // ssh-rsa keys; signatures rsa-sha2-256 / rsa-sha2-512 only
  kSkEd25519,    // sk-ssh-ed25519@openssh.com (FIDO)
  kSkEcdsaP256,  // sk-ecdsa-sha2-nistp256@openssh.com (FIDO)
};

// The key type names gpugate accepts, for messages: "ssh-ed25519, ...".
std::string_view supported_key_types();

// An SSH public key. blob is the canonical wire encoding (strict parsing
// admits exactly one encoding per key), so two keys are the same key exactly
// when their blobs are equal.
struct PublicKey {
  KeyType type = KeyType::kEd25519;
  std::string type_name;       // as on the wire: "ssh-ed25519", ...
  std::vector<uint8_t> blob;   // the whole key blob
  std::vector<uint8_t> point;  // Ed25519: 32 bytes; ECDSA: uncompressed point
  std::vector<uint8_t> rsa_e;  // RSA exponent and modulus, big-endian magnitudes
  std::vector<uint8_t> rsa_n;
  std::string sk_application;  // sk- keys: the FIDO application, usually "ssh:"

  bool is_security_key() const { return type == KeyType::kSkEd25519 || type == KeyType::kSkEcdsaP256; }
  // "SHA256:" and unpadded base64 of SHA-256(blob), as ssh-keygen -l prints it.
  std::string fingerprint() const;
  // "ED25519", "ECDSA", "RSA", "ED25519-SK", "ECDSA-SK" (ssh-keygen's words).
  std::string_view short_type() const;
  // The authorized_keys form: "ssh-ed25519 AAAAC3Nz...".
  std::string to_openssh() const;
  bool operator==(const PublicKey& other) const { return blob == other.blob; }
};

// Parses a public key blob (the wire encoding). Refuses certificates, DSA,
// RSA under 2048 bits and anything malformed, saying which.
Result<PublicKey> parse_public_key_blob(std::span<const uint8_t> blob);
// Parses "TYPE BASE64" as in allowed_signers and .pub files; the type word
// must match the type inside the blob.
Result<PublicKey> parse_public_key_text(std::string_view type_name, std::string_view base64);

inline constexpr uint8_t kSkUserPresent = 0x01;   // FIDO flag: the token was touched
inline constexpr uint8_t kSkUserVerified = 0x04;  // FIDO flag: PIN or biometric checked

// A parsed SSHSIG blob.
struct SshSignature {
  PublicKey key;                    // the signer's key as the blob carries it (not yet trusted)
  std::string sig_namespace;        // e.g. "gpugate-request@gpugate.dev"
  std::string hash_algorithm;       // "sha256" or "sha512": how the message was hashed
  std::string signature_algorithm;  // "ssh-ed25519", "rsa-sha2-512", ...
  std::vector<uint8_t> signature;   // Ed25519 and RSA: the raw signature bytes
  std::vector<uint8_t> ecdsa_r;     // ECDSA: r and s, big-endian magnitudes
  std::vector<uint8_t> ecdsa_s;
  uint8_t sk_flags = 0;       // sk- keys only
  uint32_t sk_counter = 0;    // sk- keys only
  std::vector<uint8_t> blob;  // the exact blob, for logs
};

// Removes the armor: "-----BEGIN SSH SIGNATURE-----", base64 lines of at most
// 76 characters, "-----END SSH SIGNATURE-----", optional final newline.
Result<std::vector<uint8_t>> dearmor_sshsig(std::string_view armored);
// The armor ssh-keygen writes (70-column lines, final newline).
std::string armor_sshsig(std::span<const uint8_t> blob);
// Parses the blob strictly: magic, version 1, the five fields, nothing after.
// A non-empty reserved field is refused (it is not covered by the signature).
Result<SshSignature> parse_sshsig_blob(std::span<const uint8_t> blob);
Result<SshSignature> parse_sshsig(std::string_view armored);

// The bytes the key signs (PROTOCOL.sshsig): "SSHSIG", namespace, reserved
// (empty), hash algorithm ("sha256" or "sha512"), and the hash of the message.
Result<std::vector<uint8_t>> sshsig_signed_data(std::string_view sig_namespace, std::string_view hash_algorithm,
                                                std::span<const uint8_t> message);

// Checks that sig's key signed message in expected_namespace. For sk- keys
// the user-presence flag is required. Does not consult any trust list.
Result<void> verify_sshsig(const SshSignature& sig, std::span<const uint8_t> message,
                           std::string_view expected_namespace);
inline Result<void> verify_sshsig(const SshSignature& sig, std::string_view message,
                                  std::string_view expected_namespace) {
  return verify_sshsig(sig, {reinterpret_cast<const uint8_t*>(message.data()), message.size()}, expected_namespace);
}

}  // namespace gpugate::auth
