// libFuzzer target for the ledger reader (lib/ledger/reader.cpp): splitting a
// segment into lines, the record prefix every line starts with, and the
// leaf/torn classification the Merkle tree is built from.
//
// What must hold:
//  - the lines are the segment: their texts, each followed by a newline but
//    a last unterminated one, concatenate to the input; offsets point at the
//    text; line numbers count from 1;
//  - the prefix parser's views lie inside the line, prev is empty or 16
//    characters, and the line begins with {"seq":N written as N;
//  - entries_of visits the same lines as split_lines; only an unterminated
//    last line is a torn tail, and a line is a recovered torn line only when
//    the next line is a ledger.recovered record; started at a line boundary,
//    it visits exactly the lines from there.
//
// tests/fuzz/ledger_fuzz.cpp drives the whole verifier over the same bytes.
// Build and run with `make fuzz`; seeds in tests/fuzz/corpus/reader/.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gpugate/log_reader.hpp"

using namespace gpugate::ledger;

namespace {

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

void check_prefix(std::string_view line) {
  Prefix p;
  if (!parse_prefix(line, p)) return;
  if (!inside(p.prev, line) || !inside(p.type, line)) __builtin_trap();
  if (!p.prev.empty() && p.prev.size() != 16) __builtin_trap();
  if (line.rfind("{\"seq\":" + std::to_string(p.seq), 0) != 0) __builtin_trap();
}

struct Seen {
  uint64_t lineno, offset;
  std::string_view text;
  bool terminated;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Segment seg{1, "000001.jsonl", "", size};
  std::vector<Seen> lines;
  std::string joined;
  split_lines(seg, bytes, [&](const Line& l) {
    if (l.segment != &seg || l.lineno != lines.size() + 1) __builtin_trap();
    if (l.offset > size || bytes.substr(l.offset, l.text.size()) != l.text || !inside(l.text, bytes)) __builtin_trap();
    if (!lines.empty() && !lines.back().terminated) __builtin_trap();  // only the last may lack its newline
    lines.push_back({l.lineno, l.offset, l.text, l.terminated});
    joined.append(l.text);
    if (l.terminated) joined.push_back('\n');
    check_prefix(l.text);
    return true;
  });
  if (joined != bytes) __builtin_trap();

  size_t i = 0;
  entries_of(seg, bytes, 0, [&](const Line& l, LineKind kind) {
    if (i >= lines.size() || l.offset != lines[i].offset || l.text != lines[i].text || l.lineno != lines[i].lineno)
      __builtin_trap();
    if ((kind == LineKind::torn_tail) != !l.terminated) __builtin_trap();
    if (kind == LineKind::recovered_torn) {
      Prefix next;
      if (i + 1 >= lines.size() || !parse_prefix(lines[i + 1].text, next) || next.type != "ledger.recovered")
        __builtin_trap();
    }
    i++;
    return true;
  });
  if (i != lines.size()) __builtin_trap();

  // Resuming at a line boundary (as the writer does after a checkpoint)
  // visits the remaining lines, with their offsets in the segment.
  if (lines.size() > 1) {
    size_t from = data[0] % lines.size();
    size_t j = from;
    entries_of(seg, bytes, lines[from].offset, [&](const Line& l, LineKind) {
      if (j >= lines.size() || l.offset != lines[j].offset || l.text != lines[j].text) __builtin_trap();
      j++;
      return true;
    });
    if (j != lines.size()) __builtin_trap();
  }
  return 0;
}
