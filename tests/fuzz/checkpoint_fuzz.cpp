// libFuzzer target for the ledger's signed checkpoints (lib/ledger/checkpoint.cpp):
// signed notes (the Go/C2SP note format), checkpoint bodies and verifier keys.
//
// What must hold:
//  - the formats are canonical: an accepted note renders back to its bytes
//    (text, blank line, "— name base64" lines), an accepted checkpoint body
//    begins with Checkpoint::text() and parses from it to itself, an accepted
//    verifier key prints as itself (trailing whitespace aside);
//  - signing works on what parses: any note text the format allows, signed
//    with a log key, parses, verifies with that key's verifier and fails to
//    verify once a byte of the text changes; parse_signed_checkpoint accepts
//    it exactly when the text is a checkpoint body.
//
// Build and run with `make fuzz`; seeds in tests/fuzz/corpus/checkpoint/. The
// first byte picks the part.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "gpugate/checkpoint.hpp"

using namespace gpugate;
using namespace gpugate::tlog;

namespace {

const LogKey& fuzz_key() {
  static const LogKey key = [] {
    std::array<uint8_t, 32> seed{};
    for (size_t i = 0; i < seed.size(); i++) seed[i] = static_cast<uint8_t>(i * 7 + 1);
    auto k = LogKey::from_seed("fuzz.example/log", seed);
    if (!k) __builtin_trap();
    return std::move(*k);
  }();
  return key;
}

std::string render_note(const Note& n) {
  std::string out = n.text + "\n";
  for (const auto& s : n.sigs) {
    std::vector<uint8_t> blob(s.id.begin(), s.id.end());
    blob.insert(blob.end(), s.sig.begin(), s.sig.end());
    out += "\xE2\x80\x94 " + s.name + " " + merkle::to_base64(blob) + "\n";
  }
  return out;
}

void check_note(std::string_view bytes) {
  auto n = parse_note(bytes);
  if (n && render_note(*n) != bytes) __builtin_trap();
}

void check_checkpoint(std::string_view bytes) {
  auto c = parse_checkpoint(bytes);
  if (!c) return;
  auto text = c->text();
  if (bytes.substr(0, text.size()) != text) __builtin_trap();
  auto again = parse_checkpoint(text);
  if (!again || again->origin != c->origin || again->size != c->size || again->root != c->root) __builtin_trap();
}

void check_verifier_key(std::string_view bytes) {
  auto k = parse_verifier_key(bytes);
  if (!k) return;
  while (!bytes.empty() && (bytes.back() == '\n' || bytes.back() == '\r' || bytes.back() == ' '))
    bytes.remove_suffix(1);
  if (k->text() != bytes) __builtin_trap();
}

// Note text as sign_note takes it: non-empty, ends in a newline, no control
// characters but newlines.
bool signable(std::string_view text) {
  if (text.empty() || text.back() != '\n' || text.size() > 4096) return false;
  for (unsigned char c : text)
    if ((c < 0x20 && c != '\n') || c == 0x7f) return false;
  return true;
}

void check_signing(std::string_view text) {
  if (!signable(text)) return;
  const LogKey& key = fuzz_key();
  std::string signed_note = key.sign_note(text);
  auto n = parse_note(signed_note);
  if (!n || n->text != text) __builtin_trap();
  std::array<VerifierKey, 1> trusted{key.verifier()};
  if (!verify_note(*n, trusted)) __builtin_trap();
  Note changed = *n;
  changed.text[0] = static_cast<char>(changed.text[0] ^ 1);
  if (verify_note(changed, trusted)) __builtin_trap();  // a changed text must not verify
  bool is_checkpoint = parse_checkpoint(text).ok();
  if (parse_signed_checkpoint(signed_note, "fuzz").ok() != is_checkpoint) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0:
      check_note(bytes);
      (void)parse_signed_checkpoint(bytes, "fuzz");
      break;
    case 1: check_checkpoint(bytes); break;
    case 2: check_verifier_key(bytes); break;
    default: check_signing(bytes); break;
  }
  return 0;
}
