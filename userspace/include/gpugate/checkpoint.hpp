// C2SP signed notes (c2sp.org/signed-note) with Ed25519 (OpenSSL), and C2SP
// tlog checkpoints (c2sp.org/tlog-checkpoint) carried in them: the host's
// log key signs "origin\nsize\nbase64(root)\n".
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gpugate/merkle.hpp"
#include "gpugate/result.hpp"

namespace gpugate::tlog {

using KeyId = std::array<uint8_t, 4>;

// SHA-256(name || "\n" || 0x01 || pk)[:4]
KeyId ed25519_key_id(std::string_view name, std::span<const uint8_t, 32> pub);

// A verifier key, written "name+hex(id)+base64(0x01 || pk)".
struct VerifierKey {
  std::string name;
  KeyId id{};
  std::array<uint8_t, 32> pub{};
  [[nodiscard]] std::string text() const;
};
// Parses the text form; checks the algorithm byte, the length and the id.
Result<VerifierKey> parse_verifier_key(std::string_view text);
// A file holding one verifier key (log-key.pub); errors name the file.
Result<VerifierKey> load_verifier_key(const std::string& path);

// The host's Ed25519 log key (private). Owns its OpenSSL object.
class LogKey {
 public:
  // DIR/log-key (PKCS#8 PEM, mode 0600) and DIR/log-key.pub (verifier key
  // text); created on first use. created is set when a new key was made.
  static Result<LogKey> load_or_create(const std::string& dir, const std::string& name, bool* created = nullptr);
  static Result<LogKey> generate(const std::string& name);
  static Result<LogKey> from_seed(const std::string& name, std::span<const uint8_t, 32> seed);
  LogKey(LogKey&&) noexcept;
  LogKey& operator=(LogKey&&) noexcept;
  ~LogKey();

  [[nodiscard]] const VerifierKey& verifier() const { return vkey_; }
  // The signed note: text, a blank line, "— name base64(id || sig)\n".
  [[nodiscard]] std::string sign_note(std::string_view text) const;
  // Same key material under another name (the origin names the host).
  [[nodiscard]] Result<LogKey> renamed(const std::string& name) const;

 private:
  struct Pkey;
  LogKey(std::unique_ptr<Pkey> k, VerifierKey v);
  static Result<LogKey> wrap(std::unique_ptr<Pkey> k, const std::string& name);
  std::unique_ptr<Pkey> pkey_;
  VerifierKey vkey_;
};

struct NoteSignature {
  std::string name;
  KeyId id{};
  std::vector<uint8_t> sig;  // without the key id
};

struct Note {
  std::string text;  // ends in "\n"
  std::vector<NoteSignature> sigs;
};

// Strict parse of a signed note (UTF-8 text ending in newline, a blank line,
// signature lines "— name base64").
Result<Note> parse_note(std::string_view note);

// Checks the signatures from trusted keys. Fails if a trusted key's
// signature does not verify, or if no trusted key signed; the message says
// which (forged, or signed by a key that is not trusted).
Result<const VerifierKey*> verify_note(const Note& note, std::span<const VerifierKey> trusted);

// The checkpoint body.
struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  merkle::Hash root{};
  [[nodiscard]] std::string text() const;  // "origin\nsize\nroot\n"
};
Result<Checkpoint> parse_checkpoint(std::string_view text);

// A signed checkpoint: parsed note + body.
struct SignedCheckpoint {
  std::string note;  // the whole signed note as written
  Note parsed;
  Checkpoint body;
};
// Parse (no signature check) a signed checkpoint; name is used in messages.
Result<SignedCheckpoint> parse_signed_checkpoint(std::string_view note, const std::string& name);
Result<SignedCheckpoint> load_signed_checkpoint(const std::string& path);

}  // namespace gpugate::tlog
