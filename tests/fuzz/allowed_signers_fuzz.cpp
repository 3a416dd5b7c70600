// libFuzzer target for OpenSSH allowed_signers files (lib/auth/allowed_signers.cpp)
// and the pattern lists and times they are made of.
//
// What must hold:
//  - a refused file gets an error that starts with the file's name;
//  - every accepted line says where it came from ("fuzz:N", N a line of the
//    file), and its key survives the authorized_keys form (to_openssh, then
//    parse_public_key_text gives the same key);
//  - find agrees with the lines: a line whose namespaces allow gpugate's
//    namespace and whose validity covers the time is among the lines find
//    returns for its key, and find returns lines of that key only;
//  - "*" matches every text, and a pattern without wildcards, '!' or ','
//    matches itself (texts with '*' or '?' aside: see case 1).
//
// Times without a trailing Z are local, as in OpenSSH: TZ is pinned to UTC so
// that a finding replays the same anywhere. Build and run with `make fuzz`;
// seeds in tests/fuzz/corpus/allowed_signers/. The first byte picks the part.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>

#include "gpugate/allowed_signers.hpp"
#include "gpugate/authorize.hpp"

using namespace gpugate::auth;

namespace {

size_t count_lines(std::string_view text) {
  size_t n = 1;
  for (char c : text) n += c == '\n';
  return n;
}

void check_entry(const AllowedSigners& file, const AllowedSigner& e, size_t lines) {
  if (e.source.rfind("fuzz:", 0) != 0) __builtin_trap();
  auto line = std::strtoull(e.source.c_str() + 5, nullptr, 10);
  if (line < 1 || line > lines) __builtin_trap();
  auto text = e.key.to_openssh();
  auto space = text.find(' ');
  if (space == std::string::npos) __builtin_trap();
  auto again = parse_public_key_text(std::string_view(text).substr(0, space), std::string_view(text).substr(space + 1));
  if (!again || !(*again == e.key)) __builtin_trap();
  // A time inside the line's validity, if it has one.
  int64_t when = e.valid_after.value_or(e.valid_before.value_or(1795858800));
  bool valid = (!e.valid_after || when >= *e.valid_after) && (!e.valid_before || when <= *e.valid_before);
  bool in_namespace = !e.namespaces || match_pattern_list(kSignatureNamespace, *e.namespaces);
  auto found = file.find(e.key, kSignatureNamespace, when);
  if (found)
    for (const auto& f : *found)
      if (!(f.key == e.key)) __builtin_trap();
  if (valid && in_namespace) {
    bool listed = false;
    for (const auto& f : found ? *found : std::vector<AllowedSigner>{}) listed |= f.source == e.source;
    if (!listed) __builtin_trap();
  }
}

bool plain_pattern(std::string_view p) { return !p.empty() && p.find_first_of("*?!,") == std::string_view::npos; }

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("TZ", "UTC", 1);
  tzset();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 1: {  // "TEXT\nPATTERNS"
      auto nl = text.find('\n');
      auto subject = text.substr(0, nl);
      auto patterns = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
      (void)match_pattern_list(subject, patterns);
      // "*" matches every text, '*' and '?' in the text itself included
      if (!match_pattern_list(subject, "*")) __builtin_trap();
      if (plain_pattern(subject) && !match_pattern_list(subject, subject)) __builtin_trap();
      break;
    }
    case 2: (void)parse_openssh_time(text); break;
    default: {
      auto file = AllowedSigners::parse(text, "fuzz");
      if (!file) {
        if (file.error().message.rfind("fuzz", 0) != 0) __builtin_trap();
        break;
      }
      size_t lines = count_lines(text);
      for (const auto& e : file->entries()) check_entry(*file, e, lines);
      break;
    }
  }
  return 0;
}
