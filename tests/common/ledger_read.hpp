// Reading a ledger directory in tests: every segment (000001.jsonl, ...,
// and the sealed ones gpugated compressed, 000001.jsonl.zst) in order, one
// parsed record per line.
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpugate/log_reader.hpp"

namespace gpugate::test {

// The plain segment files of a ledger directory, in order (the tests that
// edit a segment's bytes).
inline std::vector<std::filesystem::path> ledger_segments(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().extension() == ".jsonl") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// All lines of all segments, as written.
inline std::vector<std::string> ledger_lines(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  auto segs = ledger::list_segments(dir, true);
  if (!segs) return out;
  (void)ledger::for_each_line(*segs, [&](const ledger::Line& l) {
    out.emplace_back(l.text);
    return true;
  });
  return out;
}

// All records (optionally of one type), parsed; unparsable lines are skipped.
inline std::vector<nlohmann::json> ledger_records(const std::filesystem::path& dir, const std::string& type = "") {
  std::vector<nlohmann::json> out;
  for (const auto& line : ledger_lines(dir)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    if (!type.empty() && j.value("type", "") != type) continue;
    out.push_back(std::move(j));
  }
  return out;
}

// The ledger as one text (for failure messages).
inline std::string ledger_text(const std::filesystem::path& dir) {
  std::string s;
  for (const auto& l : ledger_lines(dir)) s += l + "\n";
  return s;
}

}  // namespace gpugate::test
