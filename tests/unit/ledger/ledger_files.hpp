// What the ledger tests do to a ledger's files: read and write them whole
// or by line, and a fresh log key.
#pragma once
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "gpugate/checkpoint.hpp"

namespace gpugate::test {

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
inline void spit(const std::filesystem::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << s;
}
inline std::vector<std::string> lines_of(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}
inline void write_lines(const std::filesystem::path& p, const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  spit(p, out);
}
inline std::shared_ptr<const tlog::LogKey> test_key(const std::string& name = "gpugate/testhost") {
  return std::make_shared<const tlog::LogKey>(*tlog::LogKey::generate(name));
}

}  // namespace gpugate::test
