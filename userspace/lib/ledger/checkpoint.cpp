// Signed notes and checkpoints. See checkpoint.hpp.
#include "gpugate/checkpoint.hpp"
#include "gpugate/log_reader.hpp"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

namespace gpugate::tlog {

namespace {

constexpr std::string_view kEmDash = "\xE2\x80\x94";
constexpr uint8_t kAlgEd25519 = 0x01;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

bool valid_key_name(std::string_view name) {
  if (name.empty()) return false;
  for (unsigned char c : name)
    if (c <= 0x20 || c == '+' || c == 0x7f) return false;
  return true;
}

bool verify_ed25519(std::span<const uint8_t, 32> pub, std::string_view msg, std::span<const uint8_t> sig) {
  if (sig.size() != 64) return false;
  PkeyPtr pk(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, pub.data(), 32));
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!pk || !ctx) return false;
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pk.get()) != 1) return false;
  return EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), reinterpret_cast<const uint8_t*>(msg.data()),
                          msg.size()) == 1;
}

Result<std::string> read_small_file(const std::string& path, const char* what, const char* fix) {
  return ledger::read_regular_file(path, 1 << 20, what, fix);
}

}  // namespace

struct LogKey::Pkey {
  PkeyPtr key;
};

KeyId ed25519_key_id(std::string_view name, std::span<const uint8_t, 32> pub) {
  merkle::Hasher h;
  h.begin();
  h.update(name);
  h.update("\n");
  char alg = kAlgEd25519;
  h.update(std::string_view(&alg, 1));
  h.update(std::string_view(reinterpret_cast<const char*>(pub.data()), 32));
  auto d = h.finish();
  return {d[0], d[1], d[2], d[3]};
}

std::string VerifierKey::text() const {
  std::vector<uint8_t> material{kAlgEd25519};
  material.insert(material.end(), pub.begin(), pub.end());
  return fmt::format("{}+{}+{}", name, merkle::to_hex(id), merkle::to_base64(material));
}

Result<VerifierKey> parse_verifier_key(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
  auto p1 = text.find('+');
  if (p1 == std::string_view::npos || p1 + 10 > text.size() || text[p1 + 9] != '+')
    return make_error("not a verifier key: expected name+hex8+base64, as in log-key.pub");
  VerifierKey k;
  k.name = std::string(text.substr(0, p1));
  if (!valid_key_name(k.name)) return make_error("not a verifier key: the name has a space, '+' or control character");
  auto idhex = text.substr(p1 + 1, 8);
  // Lowercase only, as text() prints it: one key has one spelling, so keys
  // compare and pin as strings.
  for (char c : idhex)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return make_error("not a verifier key: the key id is not 8 lowercase hex digits");
  for (size_t i = 0; i < 4; i++) {
    unsigned v = 0;
    auto r = std::from_chars(idhex.data() + 2 * i, idhex.data() + 2 * i + 2, v, 16);
    if (r.ec != std::errc() || r.ptr != idhex.data() + 2 * i + 2)
      return make_error("not a verifier key: the key id is not 8 lowercase hex digits");
    k.id[i] = static_cast<uint8_t>(v);
  }
  auto material = merkle::from_base64(text.substr(p1 + 10));
  if (!material) return make_error("not a verifier key: " + material.error().message);
  if (material->size() != 33 || (*material)[0] != kAlgEd25519)
    return make_error("not an Ed25519 verifier key (algorithm byte 0x01 and 32 key bytes expected)");
  std::memcpy(k.pub.data(), material->data() + 1, 32);
  if (ed25519_key_id(k.name, k.pub) != k.id)
    return make_error("verifier key damaged: its key id does not match its name and key");
  return k;
}

Result<VerifierKey> load_verifier_key(const std::string& path) {
  auto text = read_small_file(path, "key", "pass the log-key.pub of the host's --state-dir");
  if (!text) return text.error();
  auto k = parse_verifier_key(*text);
  if (!k)
    return make_error(fmt::format("key {}: {}; pass the log-key.pub from the host's --state-dir (one line)", path,
                                  k.error().message));
  return k;
}

LogKey::LogKey(LogKey&&) noexcept = default;
LogKey& LogKey::operator=(LogKey&&) noexcept = default;
LogKey::~LogKey() = default;

LogKey::LogKey(std::unique_ptr<Pkey> k, VerifierKey v) : pkey_(std::move(k)), vkey_(std::move(v)) {}

Result<LogKey> LogKey::wrap(std::unique_ptr<Pkey> k, const std::string& name) {
  if (!valid_key_name(name))
    return make_error(fmt::format("log key name '{}': names may not contain spaces, '+' or control characters", name));
  if (EVP_PKEY_get_base_id(k->key.get()) != EVP_PKEY_ED25519) return make_error("the log key is not an Ed25519 key");
  VerifierKey v;
  v.name = name;
  size_t len = v.pub.size();
  if (EVP_PKEY_get_raw_public_key(k->key.get(), v.pub.data(), &len) != 1 || len != 32)
    return make_error("cannot read the log key's public half (OpenSSL)");
  v.id = ed25519_key_id(name, v.pub);
  return LogKey(std::move(k), std::move(v));
}

Result<LogKey> LogKey::generate(const std::string& name) {
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (!raw) return make_error("cannot generate an Ed25519 key (OpenSSL)");
  return wrap(std::make_unique<Pkey>(Pkey{PkeyPtr(raw)}), name);
}

Result<LogKey> LogKey::from_seed(const std::string& name, std::span<const uint8_t, 32> seed) {
  PkeyPtr k(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), 32));
  if (!k) return make_error("cannot load an Ed25519 seed (OpenSSL)");
  return wrap(std::make_unique<Pkey>(Pkey{std::move(k)}), name);
}

Result<LogKey> LogKey::renamed(const std::string& name) const {
  EVP_PKEY_up_ref(pkey_->key.get());
  return wrap(std::make_unique<Pkey>(Pkey{PkeyPtr(pkey_->key.get())}), name);
}

Result<LogKey> LogKey::load_or_create(const std::string& dir, const std::string& name, bool* created) {
  namespace fs = std::filesystem;
  if (created) *created = false;
  std::error_code ec;
  fs::create_directories(dir, ec);
  std::string path = (fs::path(dir) / "log-key").string();
  std::string pub_path = path + ".pub";
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (st.st_mode & 077)
      return make_error(fmt::format("log key {}: readable by group or others (mode {:o}); fix with chmod 600 {}", path,
                                    st.st_mode & 0777, path));
    BioPtr bio(BIO_new_file(path.c_str(), "r"));
    if (!bio)
      return make_error(fmt::format("log key {}: cannot open: {}; run gpugated as the owner of its --state-dir", path,
                                    std::strerror(errno)),
                        errno);
    PkeyPtr k(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (!k || EVP_PKEY_get_base_id(k.get()) != EVP_PKEY_ED25519)
      return make_error(fmt::format(
          "log key {}: not an Ed25519 private key in PEM; restore it from a backup, or move it aside to create a "
          "new key (checkpoints signed by the old key then verify only with the old log-key.pub)",
          path));
    auto key = wrap(std::make_unique<Pkey>(Pkey{std::move(k)}), name);
    if (!key) return key.error();
    // Keep the public half beside it, under the current name.
    std::ofstream(pub_path, std::ios::trunc) << key->verifier().text() << "\n";
    return key;
  }
  auto key = generate(name);
  if (!key) return key.error();
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return make_error(
        fmt::format("log key {}: cannot create: {}; give gpugated a writable --state-dir", path, std::strerror(errno)),
        errno);
  BioPtr bio(BIO_new_fd(fd, BIO_CLOSE));
  if (!bio) {
    ::close(fd);
    return make_error("log key: out of memory (OpenSSL)");
  }
  if (PEM_write_bio_PrivateKey(bio.get(), key->pkey_->key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
      BIO_flush(bio.get()) != 1 || ::fsync(fd) != 0)
    return make_error(fmt::format("log key {}: cannot write: {}", tmp, std::strerror(errno)), errno);
  bio.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return make_error(fmt::format("log key {}: cannot rename into place: {}", path, std::strerror(errno)), errno);
  std::ofstream(pub_path, std::ios::trunc) << key->verifier().text() << "\n";
  if (created) *created = true;
  return key;
}

std::string LogKey::sign_note(std::string_view text) const {
  uint8_t sig[64];
  size_t len = sizeof(sig);
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey_->key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig, &len, reinterpret_cast<const uint8_t*>(text.data()), text.size()) != 1 ||
      len != 64)
    return {};
  std::vector<uint8_t> blob(vkey_.id.begin(), vkey_.id.end());
  blob.insert(blob.end(), sig, sig + 64);
  std::string out(text);
  out += '\n';
  out += kEmDash;
  out += ' ';
  out += vkey_.name;
  out += ' ';
  out += merkle::to_base64(blob);
  out += '\n';
  return out;
}

Result<Note> parse_note(std::string_view s) {
  if (s.empty() || s.back() != '\n') return make_error("a signed note ends in a newline");
  if (s.size() > (1 << 20)) return make_error("a signed note is at most 1 MiB");
  for (unsigned char c : s)
    if ((c < 0x20 && c != '\n') || c == 0x7f) return make_error("a signed note has no control characters");
  auto split = s.rfind("\n\n");
  if (split == std::string_view::npos) return make_error("no blank line before the signatures");
  Note n;
  n.text = std::string(s.substr(0, split + 1));
  std::string_view sigs = s.substr(split + 2);
  while (!sigs.empty()) {
    auto nl = sigs.find('\n');
    std::string_view line = sigs.substr(0, nl);
    sigs.remove_prefix(nl + 1);
    if (!line.starts_with(kEmDash) || line.size() < kEmDash.size() + 1 || line[kEmDash.size()] != ' ')
      return make_error("a signature line starts with an em dash (U+2014) and a space");
    line.remove_prefix(kEmDash.size() + 1);
    auto sp = line.find(' ');
    if (sp == std::string_view::npos) return make_error("a signature line is '— name base64'");
    NoteSignature sig;
    sig.name = std::string(line.substr(0, sp));
    if (!valid_key_name(sig.name)) return make_error("a signature names a key with a space or '+'");
    auto blob = merkle::from_base64(line.substr(sp + 1));
    if (!blob) return make_error("signature of " + sig.name + ": " + blob.error().message);
    if (blob->size() < 5) return make_error("signature of " + sig.name + ": too short");
    std::memcpy(sig.id.data(), blob->data(), 4);
    sig.sig.assign(blob->begin() + 4, blob->end());
    n.sigs.push_back(std::move(sig));
    if (n.sigs.size() > 100) return make_error("more than 100 signatures");
  }
  if (n.sigs.empty()) return make_error("no signature lines");
  return n;
}

Result<const VerifierKey*> verify_note(const Note& note, std::span<const VerifierKey> trusted) {
  const VerifierKey* good = nullptr;
  std::string seen;
  for (const auto& s : note.sigs) {
    seen += fmt::format("{}{}+{}", seen.empty() ? "" : ", ", s.name, merkle::to_hex(s.id));
    for (const auto& k : trusted) {
      if (k.name != s.name || k.id != s.id) continue;
      if (!verify_ed25519(k.pub, note.text, s.sig))
        return make_error(fmt::format(
            "the signature of {} does not verify: the checkpoint was changed after signing, or forged", k.name));
      good = &k;
    }
  }
  if (!good) {
    std::string want;
    for (const auto& k : trusted)
      want += fmt::format("{}{}+{}", want.empty() ? "" : ", ", k.name, merkle::to_hex(k.id));
    return make_error(fmt::format("signed by {}, not by a trusted key ({}): re-signed with another key", seen,
                                  want.empty() ? "none given" : want));
  }
  return good;
}

std::string Checkpoint::text() const { return fmt::format("{}\n{}\n{}\n", origin, size, merkle::to_base64(root)); }

Result<Checkpoint> parse_checkpoint(std::string_view text) {
  Checkpoint c;
  std::string_view rest = text;
  std::string_view lines[3];
  for (auto& l : lines) {
    auto nl = rest.find('\n');
    if (nl == std::string_view::npos) return make_error("a checkpoint has an origin, a size and a root line");
    l = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
  }
  if (lines[0].empty()) return make_error("the checkpoint's origin line is empty");
  c.origin = std::string(lines[0]);
  auto sz = lines[1];
  if (sz.empty() || (sz.size() > 1 && sz[0] == '0'))
    return make_error("the tree size is a decimal without leading zeros");
  auto r = std::from_chars(sz.data(), sz.data() + sz.size(), c.size);
  if (r.ec != std::errc() || r.ptr != sz.data() + sz.size()) return make_error("the tree size is not a number");
  auto root = merkle::hash_from_base64(lines[2]);
  if (!root) return make_error("the root hash: " + root.error().message);
  c.root = *root;
  return c;
}

Result<SignedCheckpoint> parse_signed_checkpoint(std::string_view note, const std::string& name) {
  auto n = parse_note(note);
  if (!n) return make_error(fmt::format("checkpoint {}: not a signed note ({})", name, n.error().message));
  auto body = parse_checkpoint(n->text);
  if (!body) return make_error(fmt::format("checkpoint {}: {}", name, body.error().message));
  return SignedCheckpoint{std::string(note), std::move(*n), std::move(*body)};
}

Result<SignedCheckpoint> load_signed_checkpoint(const std::string& path) {
  auto text = read_small_file(path, "checkpoint", "pass a file written by 'gpugate log checkpoint'");
  if (!text) return text.error();
  auto c = parse_signed_checkpoint(*text, path);
  if (!c) return make_error(c.error().message + "; pass a file written by 'gpugate log checkpoint', unchanged");
  return c;
}

}  // namespace gpugate::tlog
