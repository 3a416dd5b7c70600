// mmiotrace's text, parsed and classified. The line forms are the kernel's
// (torvalds/linux kernel/trace/trace_mmiotrace.c, the same in 6.1 and 6.12):
//   VERSION 20070824
//   PCIDEV <bus><devfn> <vendor><device> <irq> <7 x start|flags> <7 x len> [driver]
//   MAP <secs.usecs> <map_id> 0x<phys> 0x<virt> 0x<len> 0x<pc> <pid>
//   UNMAP <secs.usecs> <map_id> 0x<pc> <pid>
//   R|W <width> <secs.usecs> <map_id> 0x<phys> 0x<value> 0x<pc> <pid>
//   UNKNOWN <secs.usecs> <map_id> 0x<phys> <opcode bytes> 0x<pc> <pid>
//   MARK <secs.usecs> <text>   (trace_marker writes; "Lost N events." too)
// and the tracing core's own "CPU:N [LOST M EVENTS]" (kernel/trace/trace.c).
#include <algorithm>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "gpugate/decode.hpp"
#include "gpugate/mmio.hpp"

namespace gpugate::mmio {
namespace {

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) i++;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') i++;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

bool number(std::string_view s, uint64_t& out) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && p == s.data() + s.size();
}

bool map_id(std::string_view s, int& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// "secs.usecs": digits, one dot, digits.
bool timestamp(std::string_view s) {
  auto dot = s.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == s.size()) return false;
  for (size_t i = 0; i < s.size(); i++)
    if (i != dot && (s[i] < '0' || s[i] > '9')) return false;
  return true;
}

}  // namespace

std::optional<Event> parse_line(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  auto f = fields(line);
  if (f.empty()) return std::nullopt;
  Event e;
  uint64_t n = 0;
  if (f[0].starts_with("CPU:") && f.size() >= 3 && f[1] == "[LOST") {
    e.op = Op::kMark;
    e.time = "0.000000";
    e.text = f.size() == 4 && number(f[2], n) ? fmt::format("Lost {} events.", n) : std::string("Lost events.");
    return e;
  }
  if (f[0] == "VERSION" && f.size() == 2 &&
      std::all_of(f[1].begin(), f[1].end(), [](char ch) { return ch > 0x20 && ch < 0x7f; })) {
    e.op = Op::kVersion;
    e.text = std::string(f[1]);
    return e;
  }
  if (f[0] == "PCIDEV" && f.size() >= 17) {
    e.op = Op::kPciDev;
    e.text = std::string(line.substr(7));
    return e;
  }
  if (f[0] == "MARK" && f.size() >= 2 && timestamp(f[1])) {
    e.op = Op::kMark;
    e.time = std::string(f[1]);
    auto at = line.find(f[1]) + f[1].size();
    while (at < line.size() && line[at] == ' ') at++;
    e.text = std::string(line.substr(at));
    return e;
  }
  if (f[0] == "MAP" && f.size() == 8 && timestamp(f[1]) && map_id(f[2], e.map_id) && number(f[3], e.phys) &&
      number(f[5], e.len)) {
    e.op = Op::kMap;
    e.time = std::string(f[1]);
    return e;
  }
  if (f[0] == "UNMAP" && f.size() == 5 && timestamp(f[1]) && map_id(f[2], e.map_id)) {
    e.op = Op::kUnmap;
    e.time = std::string(f[1]);
    return e;
  }
  if ((f[0] == "R" || f[0] == "W") && f.size() == 8 && number(f[1], n) && (n == 1 || n == 2 || n == 4 || n == 8) &&
      timestamp(f[2]) && map_id(f[3], e.map_id) && number(f[4], e.phys) && number(f[5], e.value)) {
    e.op = f[0] == "R" ? Op::kRead : Op::kWrite;
    e.width = static_cast<unsigned>(n);
    e.time = std::string(f[2]);
    return e;
  }
  if (f[0] == "UNKNOWN" && f.size() == 7 && timestamp(f[1]) && map_id(f[2], e.map_id) && number(f[3], e.phys)) {
    e.op = Op::kUnknownOp;
    e.time = std::string(f[1]);
    e.text = std::string(f[4]);
    return e;
  }
  return std::nullopt;
}

const Register* find_register(uint16_t vendor, uint16_t device, unsigned bar, uint64_t offset) {
  const Register* best = nullptr;
  for (const auto& r : register_table()) {
    if (r.vendor != vendor || (r.device && r.device != device) || r.bar != bar) continue;
    if (offset < r.first || offset > r.last) continue;
    if (!best || r.last - r.first < best->last - best->first) best = &r;
  }
  return best;
}

Capture classify(std::string_view trace, const std::vector<PciGpu>& gpus, size_t max_kept) {
  Capture c;
  size_t pos = 0;
  while (pos < trace.size()) {
    size_t nl = trace.find('\n', pos);
    std::string_view line = trace.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? trace.size() : nl + 1;
    if (line.empty()) continue;
    c.lines++;
    auto e = parse_line(line);
    if (!e) {
      c.malformed++;
      continue;
    }
    switch (e->op) {
      case Op::kVersion: c.version = e->text; break;
      case Op::kPciDev:
      case Op::kUnmap: break;
      case Op::kMark: {
        unsigned long long lost = 0;
        // the kernel's own note of what it dropped: "Lost N events." (no N: at least one)
        if (std::sscanf(e->text.c_str(), "Lost %llu events", &lost) == 1)
          c.lost += lost;
        else if (e->text.starts_with("Lost events"))
          c.lost += 1;
        c.marks.push_back(e->text);
        break;
      }
      case Op::kUnknownOp: c.unknown_ops++; break;
      case Op::kRead: c.reads++; break;
      case Op::kMap: {
        c.maps++;
        for (const auto& g : gpus)
          for (const auto& b : g.bars)
            if (b.memory && e->phys <= b.end && e->phys + (e->len ? e->len - 1 : 0) >= b.start) c.maps_on_gpus++;
        break;
      }
      case Op::kWrite: {
        c.writes++;
        for (const auto& g : gpus)
          for (const auto& b : g.bars) {
            if (!b.memory || e->phys < b.start || e->phys > b.end) continue;
            Write w{e->time, g.address, b.index, e->phys - b.start, e->width, e->value, nullptr};
            w.reg = find_register(g.vendor_id, g.device_id, b.index, w.offset);
            c.gpu_writes++;
            if (w.reg) c.named_writes++;
            c.by_register[{g.address, b.index, w.reg ? std::string(w.reg->name) : std::string(),
                           w.reg ? w.reg->cls : static_cast<unsigned>(GG_CLASS_UNKNOWN)}]++;
            auto& list = w.reg ? c.named : c.unnamed;
            size_t cap = w.reg ? max_kept : max_kept / 8;
            if (list.size() < cap)
              list.push_back(std::move(w));
            else
              (w.reg ? c.named_cut : c.unnamed_cut) = true;
          }
        break;
      }
    }
  }
  return c;
}

nlohmann::ordered_json capture_json(const Capture& c) {
  nlohmann::ordered_json j;
  j["trace_version"] = c.version.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(c.version);
  j["lines"] = c.lines;
  j["malformed_lines"] = c.malformed;
  j["maps"] = c.maps;
  j["maps_on_gpus"] = c.maps_on_gpus;
  j["reads"] = c.reads;
  j["writes"] = c.writes;
  j["gpu_writes"] = c.gpu_writes;
  j["named_writes"] = c.named_writes;
  j["unknown_ops"] = c.unknown_ops;
  j["lost_events"] = c.lost;
  auto regs = nlohmann::ordered_json::array();
  for (const auto& [key, count] : c.by_register) {
    const auto& [gpu, bar, name, cls] = key;
    regs.push_back({{"gpu", gpu},
                    {"bar", bar},
                    {"register", name.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(name)},
                    {"class", class_name(cls)},
                    {"writes", count}});
  }
  j["by_register"] = std::move(regs);
  auto list = [](const std::vector<Write>& writes) {
    auto out = nlohmann::ordered_json::array();
    for (const auto& w : writes) {
      nlohmann::ordered_json o{{"time", w.time},   {"gpu", w.gpu},
                               {"bar", w.bar},     {"offset", fmt::format("{:#x}", w.offset)},
                               {"width", w.width}, {"value", fmt::format("{:#x}", w.value)}};
      if (w.reg) {
        o["register"] = w.reg->name;
        o["group"] = w.reg->group;
        o["class"] = class_name(w.reg->cls);
      }
      out.push_back(std::move(o));
    }
    return out;
  };
  j["named_writes_kept"] = list(c.named);
  j["named_writes_cut"] = c.named_cut;
  j["unnamed_writes_kept"] = list(c.unnamed);
  j["unnamed_writes_cut"] = c.unnamed_cut;
  return j;
}

}  // namespace gpugate::mmio
