// show, stats, export and replay over a ledger directory. See log_query.hpp.
#include "gpugate/log_query.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <time.h>

#include <unistd.h>
#include <algorithm>

#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include <fmt/format.h>

#include "gg_decode_c.h"
#include "gpugate/decode.hpp"
#include "gpugate/device.hpp"
#include "gpugate/hostinfo.hpp"
#include "gpugate/log_verify.hpp"
#include "gpugate/merkle.hpp"
#include "gpugate/pipeline.hpp"
#include "gpugate/timefmt.hpp"

namespace gpugate::ledger {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const json& member(const json& j, const char* k) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(k);
  return it == j.end() ? kNull : *it;
}

std::string text_of(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "";
  return v.dump();
}

std::string str(const json& j, const char* k) { return text_of(member(j, k)); }
std::string str(const json& j, const char* a, const char* b) { return text_of(member(member(j, a), b)); }

std::string record_class(const json& r) {
  std::string c = str(r, "decoded", "class");
  return c.empty() ? str(r, "class") : c;
}

std::string gpu_label(const json& r) {
  const json& d = member(r, "device");
  if (!d.is_object()) {
    const json& g = member(r, "gpu");  // state.* and knob.* name the GPU by its PCI address
    return g.is_object() && member(g, "pci").is_string() ? "gpu " + str(g, "pci") : "";
  }
  std::string kind = str(d, "kind");
  const json& idx = member(d, "gpu_index");
  if (idx.is_number()) return fmt::format("{} {}", kind.empty() ? "gpu" : kind, idx.dump());
  std::string rdev = str(d, "rdev");
  return rdev.empty() ? kind : fmt::format("{} {}", kind, rdev);
}

std::string process_label(const json& r) {
  const json& p = member(r, "process");
  if (!p.is_object()) return "";
  std::string comm = str(p, "comm"), exe = str(p, "exe");
  return exe.empty() || exe == comm ? comm : fmt::format("{} ({})", comm, exe);
}

std::string command_of(const json& r) { return str(r, "decoded", "command"); }

std::string result_of(const json& r) {
  const json& results = member(r, "results");  // ioctl.summary: "x30 ok 26, EINVAL 4"
  if (results.is_object() && member(r, "calls").is_number_unsigned()) {
    std::string out = fmt::format("x{}", member(r, "calls").get<uint64_t>());
    bool first = true;
    for (const auto& [k, v] : results.items()) {
      out += fmt::format("{}{} {}", first ? " " : ", ", k, v.dump());
      first = false;
    }
    return out;
  }
  const json& res = member(r, "result");
  if (!res.is_object()) return "";
  const json& ret = member(res, "ret");
  if (ret.is_null()) return "no exit";
  const json& err = member(res, "error");
  if (err.is_object()) return fmt::format("{} {}", ret.dump(), str(err, "name"));
  return ret.dump();
}

// The calls of an ioctl.counts record ({"calls":{CLASS:{VENDOR:N}}}), each
// class with its count for one vendor.
template <class F>
void each_counted(const json& j, F&& f) {
  const json& calls = member(j, "calls");
  if (!calls.is_object()) return;
  for (const auto& [cls, per_vendor] : calls.items()) {
    if (!per_vendor.is_object()) continue;
    for (const auto& [vendor, n] : per_vendor.items())
      if (n.is_number_unsigned()) f(cls, n.template get<uint64_t>());
  }
}

bool in(const std::vector<std::string>& list, const std::string& v) {
  for (const auto& x : list)
    if (x == v) return true;
  return false;
}

bool is_number(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The daemon's human line, from the record's own bytes (member order kept).
std::string human(const json& r, std::string_view line) {
  try {
    return human_line(nlohmann::ordered_json::parse(line));
  } catch (const std::exception&) {
    return fmt::format("#{} {}", str(r, "seq"), str(r, "type"));
  }
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) {
    if (c == '"') o += '"';
    o += c;
  }
  return o + "\"";
}

int64_t now_realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

bool Filter::matches(const json& r) const {
  if (since_ns || until_ns) {
    const json& t = member(r, "realtime_ns");
    if (!t.is_number_integer()) return false;
    int64_t v = t.get<int64_t>();
    if (since_ns && v < *since_ns) return false;
    if (until_ns && v >= *until_ns) return false;
  }
  if (seq_from || seq_to) {
    const json& s = member(r, "seq");
    if (!s.is_number_unsigned()) return false;
    uint64_t v = s.get<uint64_t>();
    if (seq_from && v < *seq_from) return false;
    if (seq_to && v > *seq_to) return false;
  }
  if (!types.empty() && !in(types, str(r, "type"))) return false;
  if (!classes.empty() && !in(classes, record_class(r))) return false;
  if (!verdicts.empty() && !in(verdicts, str(r, "verdict"))) return false;
  if (!processes.empty()) {
    const json& p = member(r, "process");
    bool any = false;
    for (const auto& want : processes) {
      if (is_number(want) ? str(p, "pid") == want
                          : (str(p, "comm") == want || str(p, "exe").find(want) != std::string::npos))
        any = true;
    }
    if (!any) return false;
  }
  if (!gpus.empty()) {
    const json& d = member(r, "device");
    const json& gj = member(r, "gpu");
    bool any = false;
    for (const auto& g : gpus) {
      for (const char* k : {"gpu_index", "pci", "rdev", "path", "uuid"})
        if (!member(d, k).is_null() && str(d, k) == g) any = true;
      for (const char* k : {"pci", "uuid"})
        if (!member(gj, k).is_null() && str(gj, k) == g) any = true;
    }
    if (!any) return false;
  }
  if (!rules.empty()) {
    const json& ru = member(r, "rule");
    bool any = false;
    for (const auto& want : rules)
      for (const char* k : {"name", "action", "source", "rule"})
        if (!member(ru, k).is_null() && str(ru, k) == want) any = true;
    if (!any) return false;
  }
  return true;
}

Result<int64_t> parse_time(const std::string& t) {
  if (!t.empty() && is_number(t.substr(0, t.size() - 1)) && std::string("smhd").find(t.back()) != std::string::npos) {
    int64_t n = std::stoll(t.substr(0, t.size() - 1));
    int64_t unit = t.back() == 's' ? 1 : t.back() == 'm' ? 60 : t.back() == 'h' ? 3600 : 86400;
    return now_realtime_ns() - n * unit * 1000000000;
  }
  // YYYY-MM-DD[(T| )HH:MM[:SS[.frac]]][Z|+HH:MM|-HH:MM]
  int Y = 0, M = 0, D = 0, h = 0, m = 0, s = 0;
  int64_t frac = 0;
  size_t i = 0;
  auto num = [&](int digits, int& out) {
    if (i + digits > t.size()) return false;
    out = 0;
    for (int k = 0; k < digits; k++, i++) {
      if (t[i] < '0' || t[i] > '9') return false;
      out = out * 10 + (t[i] - '0');
    }
    return true;
  };
  auto bad = [&] {
    return make_error(
        fmt::format("time '{}': use RFC 3339 (2026-11-28T12:00:00Z), a date (2026-11-28), or a time "
                    "ago (90s, 15m, 2h, 7d)",
                    t));
  };
  if (!num(4, Y) || i >= t.size() || t[i++] != '-' || !num(2, M) || i >= t.size() || t[i++] != '-' || !num(2, D))
    return bad();
  int64_t offset_s = 0;
  if (i < t.size() && (t[i] == 'T' || t[i] == ' ')) {
    i++;
    if (!num(2, h) || i >= t.size() || t[i++] != ':' || !num(2, m)) return bad();
    if (i < t.size() && t[i] == ':') {
      i++;
      if (!num(2, s)) return bad();
      if (i < t.size() && t[i] == '.') {
        i++;
        int64_t scale = 100000000;
        while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
          frac += (t[i] - '0') * scale;
          scale /= 10;
          i++;
        }
      }
    }
  }
  if (i < t.size()) {
    if (t[i] == 'Z' && i + 1 == t.size()) {
      i++;
    } else if ((t[i] == '+' || t[i] == '-') && i + 6 == t.size()) {
      int sign = t[i] == '-' ? -1 : 1, oh = 0, om = 0;
      i++;
      if (!num(2, oh) || t[i++] != ':' || !num(2, om)) return bad();
      offset_s = sign * (oh * 3600 + om * 60);
    } else {
      return bad();
    }
  }
  if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || s > 60) return bad();
  tm tmv{};
  tmv.tm_year = Y - 1900;
  tmv.tm_mon = M - 1;
  tmv.tm_mday = D;
  tmv.tm_hour = h;
  tmv.tm_min = m;
  tmv.tm_sec = s;
  int64_t secs = timegm(&tmv) - offset_s;
  return secs * 1000000000 + frac;
}

Result<std::pair<std::optional<uint64_t>, std::optional<uint64_t>>> parse_seq_range(const std::string& t) {
  auto bad = make_error(fmt::format("seq range '{}': use N, A..B, A.. or ..B", t));
  auto one = [](std::string_view s) -> std::optional<uint64_t> {
    uint64_t v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
    return v;
  };
  auto dots = t.find("..");
  if (dots == std::string::npos) {
    auto v = one(t);
    if (!v) return bad;
    return std::pair{v, v};
  }
  std::string_view a(t.data(), dots), b(t.data() + dots + 2, t.size() - dots - 2);
  std::optional<uint64_t> lo, hi;
  if (!a.empty() && !(lo = one(a))) return bad;
  if (!b.empty() && !(hi = one(b))) return bad;
  return std::pair{lo, hi};
}

Result<void> for_each_record(const std::string& dir, const std::function<bool(const Record&)>& fn,
                             const ProgressFn& progress) {
  auto segs = list_segments(dir);
  if (!segs) return segs.error();
  Progress p;
  std::vector<uint64_t> base;  // bytes of the segments before each one
  for (const auto& s : *segs) {
    base.push_back(p.total_bytes);
    p.total_bytes += s.size;
  }
  auto r = for_each_entry(*segs, 0, 0, [&](const Line& l, LineKind k) {
    if (k != LineKind::leaf) return true;
    if (progress && ++p.records % kProgressEvery == 0) {
      p.bytes = base[static_cast<size_t>(l.segment - segs->data())] + l.offset;
      progress(p);
    }
    Record r;
    r.line = &l;
    r.rec = json::parse(l.text, nullptr, false);
    return fn(r);
  });
  if (progress) {
    p.bytes = p.total_bytes;
    p.done = true;
    progress(p);
  }
  return r;
}

// ---- show -------------------------------------------------------------------------

namespace {
// A record's UTC "time" as people read it: local RFC 3339, milliseconds.
std::string local_time(const std::string& utc) {
  if (utc.empty()) return utc;
  auto ns = parse_time(utc);
  return ns ? format_local_rfc3339(*ns, 3) : utc;
}
}  // namespace

Result<uint64_t> show(const std::string& dir, const Filter& f, bool as_json, uint64_t limit, std::ostream& out) {
  uint64_t n = 0;
  if (!as_json)
    out << fmt::format("{:>8} {:<29} {:<16} {:<12} {:<10} {:>7} {:<16} {:<16} {:<44} {}\n", "SEQ", "TIME", "TYPE",
                       "CLASS", "VERDICT", "PID", "PROCESS", "GPU", "COMMAND / DETAIL", "RESULT");
  auto r = for_each_record(dir, [&](const Record& rec) {
    if (rec.rec.is_discarded() || !f.matches(rec.rec)) return true;
    if (as_json) {
      out << rec.line->text << '\n';
    } else {
      const json& j = rec.rec;
      std::string type = str(j, "type"), detail = command_of(j);
      if (type == "checkpoint")
        detail = fmt::format("signs {} records ({})", str(j, "tree_size"), str(j, "reason"));
      else if (type == "gap")
        detail = fmt::format("{} records lost: {}", str(j, "lost_records"), str(j, "reason"));
      else if (type == "ledger.recovered")
        detail = str(j, "note");
      else if (type.starts_with("daemon."))
        detail = str(j, "reason").empty() ? str(j, "engine") : str(j, "reason");
      else if (type == "state.sample")
        detail = fmt::format("{}: {}", str(j, "reason"), member(j, "changed").dump());
      else if (type == "state.explained")
        detail = fmt::format("{} {}->{} by {} #{}", str(j, "field"), member(j, "before").dump(),
                             member(j, "after").dump(), str(j, "explained_by", "kind"), str(j, "explained_by", "seq"));
      else if (type == "state.unexplained")
        detail = fmt::format("UNEXPLAINED {} {}->{}", str(j, "field"), member(j, "before").dump(),
                             member(j, "after").dump());
      std::string time = local_time(str(j, "time"));
      std::string proc = member(member(j, "process"), "comm").is_string() ? str(j, "process", "comm") : "";
      out << fmt::format("{:>8} {:<29} {:<16} {:<12} {:<10} {:>7} {:<16} {:<16} {:<44} {}\n", str(j, "seq"), time, type,
                         record_class(j), str(j, "verdict"), str(j, "process", "pid"), proc, gpu_label(j),
                         detail.substr(0, 44), result_of(j));
    }
    return ++n < limit;
  });
  if (!r) return r.error();
  return n;
}

// ---- stats ------------------------------------------------------------------------

Result<nlohmann::ordered_json> stats(const std::string& dir, const Filter& f) {
  std::map<std::string, uint64_t> by_type, by_class, by_verdict, by_process, by_gpu;
  std::map<std::string, uint64_t> lost_by_class, explained_by, unexplained_by;
  uint64_t state_samples = 0;
  uint64_t records = 0, unparsable = 0, gap_records = 0, lost = 0, lost_exits = 0, recovered = 0, checkpoints = 0;
  uint64_t seq_gaps = 0;
  std::optional<uint64_t> last_seq;
  std::string first_time, last_time, last_time_any;
  nlohmann::ordered_json downtime = nlohmann::ordered_json::array();
  nlohmann::ordered_json seq_gap_list = nlohmann::ordered_json::array();
  std::string stopped_at;
  bool stopped = false;
  auto r = for_each_record(dir, [&](const Record& rec) {
    const json& j = rec.rec;
    if (j.is_discarded()) {
      unparsable++;
      return true;
    }
    // Sequence gaps and daemon down time are properties of the whole ledger.
    const json& s = member(j, "seq");
    if (s.is_number_unsigned()) {
      uint64_t v = s.get<uint64_t>();
      if (last_seq && v != *last_seq + 1) {
        seq_gaps++;
        if (seq_gap_list.size() < 100) seq_gap_list.push_back({{"after", *last_seq}, {"next", v}});
      }
      last_seq = v;
    }
    std::string type = str(j, "type");
    if (type == "daemon.stop") {
      stopped = true;
      stopped_at = str(j, "time");
    } else if (type == "daemon.start" || type == "daemon.start_failed") {
      if (!last_time_any.empty())
        downtime.push_back({{"from", stopped ? stopped_at : last_time_any},
                            {"to", str(j, "time")},
                            {"clean", stopped},
                            {"note", stopped ? "gpugated stopped cleanly"
                                             : "no daemon.stop before this start: a crash, "
                                               "a kill or a power loss"}});
      stopped = false;
    }
    if (!str(j, "time").empty()) last_time_any = str(j, "time");
    if (!f.matches(j)) return true;
    records++;
    if (first_time.empty()) first_time = str(j, "time");
    last_time = str(j, "time");
    by_type[type]++;
    if (type == "ioctl") {
      by_class[record_class(j)]++;
      by_verdict[str(j, "verdict")]++;
      by_process[process_label(j)]++;
      by_gpu[gpu_label(j)]++;
    } else if (type == "ioctl.summary" && member(j, "calls").is_number_unsigned()) {
      // The calls a summary covers count as the ioctls they were.
      uint64_t n = j["calls"].get<uint64_t>();
      by_class[record_class(j)] += n;
      by_verdict[str(j, "verdict")] += n;
      by_process[process_label(j)] += n;
      by_gpu[gpu_label(j)] += n;
    } else if (type == "ioctl.counts") {
      each_counted(j, [&](const std::string& cls, uint64_t n) {
        by_class[cls] += n;
        by_verdict["allowed"] += n;
      });
    } else if (type == "gap") {
      gap_records++;
      uint64_t n = member(j, "lost_records").is_number_unsigned() ? j["lost_records"].get<uint64_t>() : 0;
      lost += n;
      lost_exits += member(j, "lost_exit_records").is_number_unsigned() ? j["lost_exit_records"].get<uint64_t>() : 0;
      lost_by_class[str(j, "class")] += n;
    } else if (type == "state.sample") {
      state_samples++;
    } else if (type == "state.explained") {
      explained_by[str(j, "explained_by", "kind")]++;
    } else if (type == "state.unexplained") {
      unexplained_by[fmt::format("{} {}", gpu_label(j), str(j, "field"))]++;
    } else if (type == "ledger.recovered") {
      recovered++;
    } else if (type == "checkpoint") {
      checkpoints++;
    }
    return true;
  });
  if (!r) return r.error();
  auto as_obj = [](const std::map<std::string, uint64_t>& m) {
    std::vector<std::pair<std::string, uint64_t>> v(m.begin(), m.end());
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    nlohmann::ordered_json o = nlohmann::ordered_json::object();
    for (const auto& [k, n] : v) o[k.empty() ? "-" : k] = n;
    return o;
  };
  nlohmann::ordered_json s;
  s["ledger"] = dir;
  s["records"] = records;
  s["first"] = first_time;
  s["last"] = last_time;
  s["by_type"] = as_obj(by_type);
  s["by_class"] = as_obj(by_class);
  s["by_verdict"] = as_obj(by_verdict);
  s["by_process"] = as_obj(by_process);
  s["by_gpu"] = as_obj(by_gpu);
  s["gaps"] = {{"gap_records", gap_records},
               {"lost_records", lost},
               {"lost_exit_records", lost_exits},
               {"lost_by_class", as_obj(lost_by_class)},
               {"seq_gaps", seq_gaps},
               {"seq_gap_list", seq_gap_list},
               {"daemon_down", downtime}};
  uint64_t unexplained_total = 0;
  for (const auto& [k, n] : unexplained_by) unexplained_total += n;
  s["state"] = {{"samples", state_samples},
                {"explained_by", as_obj(explained_by)},
                {"unexplained", unexplained_total},
                {"unexplained_by_gpu_field", as_obj(unexplained_by)}};
  s["torn_lines_recovered"] = recovered;
  s["unparsable_lines"] = unparsable;
  s["checkpoints"] = checkpoints;
  return s;
}

std::string stats_text(const nlohmann::ordered_json& s) {
  std::string o = fmt::format("ledger     {}\nrecords    {} (from {} to {})\n", s["ledger"].get<std::string>(),
                              s["records"].get<uint64_t>(), local_time(s["first"].get<std::string>()),
                              local_time(s["last"].get<std::string>()));
  auto section = [&](const char* title, const nlohmann::ordered_json& m) {
    o += fmt::format("\n{}\n", title);
    size_t shown = 0;
    for (const auto& [k, v] : m.items()) {
      if (shown++ == 20) {
        o += fmt::format("  ... {} more\n", m.size() - 20);
        break;
      }
      o += fmt::format("  {:<40} {:>10}\n", k, v.get<uint64_t>());
    }
    if (m.empty()) o += "  (none)\n";
  };
  section("by type", s["by_type"]);
  section("ioctls by class", s["by_class"]);
  section("ioctls by verdict", s["by_verdict"]);
  section("ioctls by process", s["by_process"]);
  section("ioctls by GPU", s["by_gpu"]);
  if (s.contains("state")) {
    const auto& st = s["state"];
    o += fmt::format("\nGPU state (the watcher)\n  samples recorded {}, changes nothing explains {}\n",
                     st["samples"].get<uint64_t>(), st["unexplained"].get<uint64_t>());
    for (const auto& [k, v] : st["unexplained_by_gpu_field"].items())
      o += fmt::format("    UNEXPLAINED {:<38} {:>10}\n", k, v.get<uint64_t>());
    for (const auto& [k, v] : st["explained_by"].items())
      o += fmt::format("    explained by {:<37} {:>10}\n", k, v.get<uint64_t>());
  }
  const auto& g = s["gaps"];
  o += fmt::format(
      "\ngaps and drops\n  gap records {}: {} records and {} exit records lost in the kernel (ring buffer "
      "full)\n",
      g["gap_records"].get<uint64_t>(), g["lost_records"].get<uint64_t>(), g["lost_exit_records"].get<uint64_t>());
  for (const auto& [k, v] : g["lost_by_class"].items()) o += fmt::format("    {:<38} {:>10}\n", k, v.get<uint64_t>());
  o += fmt::format("  sequence gaps {} (run gpugate log verify: a gpugate ledger has none)\n",
                   g["seq_gaps"].get<uint64_t>());
  for (const auto& d : g["daemon_down"])
    o += fmt::format("  not recording from {} to {}: {}\n", d["from"].get<std::string>(), d["to"].get<std::string>(),
                     d["note"].get<std::string>());
  o += fmt::format("  torn lines recovered {}, unparsable lines {}, checkpoints {}\n",
                   s["torn_lines_recovered"].get<uint64_t>(), s["unparsable_lines"].get<uint64_t>(),
                   s["checkpoints"].get<uint64_t>());
  return o;
}

// ---- export -----------------------------------------------------------------------

Result<ExportResult> export_records(const std::string& dir, const Filter& f, const std::string& format,
                                    const std::string& out_path, const std::vector<std::string>& argv,
                                    const ProgressFn& progress) {
  if (format != "ecs" && format != "csv" && format != "timesketch")
    return make_error(fmt::format("export format '{}': use ecs, csv or timesketch", format));
  std::string tmp = out_path + ".tmp";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out)
    return make_error(
        fmt::format("export {}: cannot write: {}; choose a writable -o path", out_path, std::strerror(errno)), errno);
  merkle::Hasher h;
  ExportResult res;
  std::optional<uint64_t> first_seq, last_seq;
  uint64_t total = 0;
  if (format == "csv")
    out << "seq,time,type,class,verdict,pid,tid,uid,comm,exe,gpu,device,command,rule,result,reason,host_id,boot_id,"
           "leaf_hash\n";
  auto each = [&](const Record& rec) {
    total++;
    const json& j = rec.rec;
    if (j.is_discarded() || !f.matches(j)) return true;
    std::string leaf = merkle::to_hex(h.leaf(rec.line->text));
    std::string type = str(j, "type"), cls = record_class(j), verdict = str(j, "verdict");
    const json& p = member(j, "process");
    if (member(j, "seq").is_number_unsigned()) {
      if (!first_seq) first_seq = j["seq"].get<uint64_t>();
      last_seq = j["seq"].get<uint64_t>();
    }
    res.records++;
    if (format == "csv") {
      std::vector<std::string> cols = {
          str(j, "seq"),
          str(j, "time"),
          type,
          cls,
          verdict,
          str(p, "pid"),
          str(p, "tid"),
          str(p, "uid"),
          str(p, "comm"),
          str(p, "exe"),
          gpu_label(j),
          str(j, "device", "path"),
          command_of(j),
          str(j, "rule", "name").empty() ? str(j, "rule", "action") : str(j, "rule", "name"),
          result_of(j),
          str(j, "verdict_reason"),
          str(j, "host_id"),
          str(j, "boot_id"),
          leaf};
      for (size_t i = 0; i < cols.size(); i++) out << (i ? "," : "") << csv_field(cols[i]);
      out << "\n";
      return true;
    }
    nlohmann::ordered_json o;
    if (format == "ecs") {
      o["@timestamp"] = str(j, "time");
      nlohmann::ordered_json ev;
      ev["kind"] = "event";
      ev["category"] = type == "ioctl" ? nlohmann::ordered_json{"host", "iam"} : nlohmann::ordered_json{"host"};
      nlohmann::ordered_json types = nlohmann::ordered_json::array();
      if (type == "ioctl") {
        types.push_back(verdict == "allowed" ? "allowed" : "denied");
        types.push_back(cls == "query" || cls == "unknown" ? "access" : "change");
      } else {
        types.push_back("info");
      }
      ev["type"] = types;
      ev["action"] = type == "ioctl" ? (cls.empty() ? type : cls) : type;
      const json& ret = member(member(j, "result"), "ret");
      if (ret.is_number())
        ev["outcome"] = ret.get<int64_t>() >= 0 ? "success" : "failure";
      else
        ev["outcome"] = "unknown";
      ev["sequence"] = member(j, "seq");
      if (!str(j, "verdict_reason").empty()) ev["reason"] = str(j, "verdict_reason");
      ev["provider"] = "gpugate";
      ev["dataset"] = "gpugate.ledger";
      o["event"] = ev;
      o["message"] = human(j, rec.line->text);
      o["host"] = {{"id", str(j, "host_id")}, {"boot", {{"id", str(j, "boot_id")}}}};
      if (p.is_object()) {
        nlohmann::ordered_json proc;
        proc["pid"] = member(p, "pid");
        proc["thread"] = {{"id", member(p, "tid")}};
        proc["name"] = member(p, "comm");
        proc["executable"] = member(p, "exe");
        o["process"] = proc;
        o["user"] = {{"id", str(p, "uid")}};
      }
      nlohmann::ordered_json g;
      g["seq"] = member(j, "seq");
      g["type"] = type;
      if (!cls.empty()) g["class"] = cls;
      if (!verdict.empty()) g["verdict"] = verdict;
      if (!command_of(j).empty()) g["command"] = command_of(j);
      if (member(j, "device").is_object()) g["device"] = j["device"];
      if (member(j, "rule").is_object()) g["rule"] = j["rule"];
      if (member(j, "result").is_object()) g["result"] = j["result"];
      g["log"] = {{"leaf_hash", leaf}};
      o["gpugate"] = g;
    } else {  // timesketch
      o["message"] = human(j, rec.line->text);
      o["datetime"] = str(j, "time");
      o["timestamp"] = member(j, "realtime_ns").is_number_integer() ? j["realtime_ns"].get<int64_t>() / 1000 : 0;
      o["timestamp_desc"] = type == "ioctl" ? "GPU control command" : "gpugate " + type;
      o["seq"] = member(j, "seq");
      o["type"] = type;
      if (!cls.empty()) o["class"] = cls;
      if (!verdict.empty()) o["verdict"] = verdict;
      if (p.is_object()) {
        o["pid"] = member(p, "pid");
        o["comm"] = member(p, "comm");
        o["exe"] = member(p, "exe");
        o["uid"] = member(p, "uid");
      }
      if (!gpu_label(j).empty()) o["gpu"] = gpu_label(j);
      if (!command_of(j).empty()) o["command"] = command_of(j);
      o["host_id"] = str(j, "host_id");
      o["boot_id"] = str(j, "boot_id");
      o["leaf_hash"] = leaf;
    }
    out << o.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    return true;
  };
  auto r = for_each_record(dir, each, progress);
  if (!r) return r.error();
  out.close();
  if (!out) return make_error(fmt::format("export {}: write failed", tmp));
  // Hash what was written, then put it in place, read-only.
  {
    std::ifstream in(tmp, std::ios::binary);
    h.begin();
    char buf[1 << 16];
    uint64_t bytes = 0;
    while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
      h.update(std::string_view(buf, static_cast<size_t>(in.gcount())));
      bytes += static_cast<uint64_t>(in.gcount());
    }
    res.sha256 = merkle::to_hex(h.finish());
    std::error_code ec;
    fs::remove(out_path, ec);
    if (::rename(tmp.c_str(), out_path.c_str()) != 0)
      return make_error(fmt::format("export {}: cannot rename into place: {}", out_path, std::strerror(errno)));
    ::chmod(out_path.c_str(), 0444);
    std::string base = fs::path(out_path).filename().string();
    std::string sums = out_path + ".sha256";
    fs::remove(sums, ec);
    std::ofstream(sums) << res.sha256 << "  " << base << "\n";
    ::chmod(sums.c_str(), 0444);
    nlohmann::ordered_json m;
    m["tool"] = "gpugate log export";
    m["argv"] = argv;
    m["format"] = format;
    m["file"] = base;
    m["bytes"] = bytes;
    m["sha256"] = res.sha256;
    m["records"] = res.records;
    m["seq_first"] = first_seq ? json(*first_seq) : json();
    m["seq_last"] = last_seq ? json(*last_seq) : json();
    m["ledger"] = fs::absolute(dir).string();
    m["ledger_records"] = total;
    auto cp = latest_checkpoint(dir);
    m["ledger_checkpoint"] = cp ? json(cp->note) : json();
    m["leaf_hash"] = "SHA-256(0x00 || ledger line): prove a record with 'gpugate log proof SEQ'";
    m["exported_at"] = format_utc(now_realtime_ns());
    const passwd* pw = getpwuid(getuid());
    m["exported_by"] = {{"uid", getuid()}, {"user", pw ? pw->pw_name : ""}};
    char hn[256] = {};
    gethostname(hn, sizeof(hn) - 1);
    m["exported_on"] = hn;
    res.manifest_path = out_path + ".manifest.json";
    fs::remove(res.manifest_path, ec);
    std::ofstream(res.manifest_path) << m.dump(2) << "\n";
    ::chmod(res.manifest_path.c_str(), 0444);
  }
  return res;
}

// ---- replay -----------------------------------------------------------------------

Result<nlohmann::ordered_json> replay(const std::string& dir, const Filter& f, const Policy& policy,
                                      const ReplayOptions& opt) {
  uint64_t considered = 0, same = 0, changed = 0, reclassified = 0, undecodable = 0, not_replayed = 0;
  std::map<std::pair<std::string, std::string>, uint64_t> transitions;
  std::map<std::string, std::map<std::string, uint64_t>> by_class;
  nlohmann::ordered_json changes = nlohmann::ordered_json::array();
  auto r = for_each_record(dir, [&](const Record& rec) {
    const json& j = rec.rec;
    if (j.is_discarded() || !f.matches(j)) return true;
    if (str(j, "type") == "ioctl.summary" && member(j, "calls").is_number_unsigned()) {
      not_replayed += j["calls"].get<uint64_t>();  // their bytes were not recorded: nothing to decide on
      return true;
    }
    if (str(j, "type") == "ioctl.counts") {
      each_counted(j, [&](const std::string&, uint64_t n) { not_replayed += n; });
      return true;
    }
    if (str(j, "type") != "ioctl") return true;
    considered++;
    std::string recorded_cls = record_class(j);
    unsigned cls = GG_CLASS_UNKNOWN;
    if (auto c = class_from_name(recorded_cls)) cls = *c;
    // The subject as the gate saw it.
    const json& p = member(j, "process");
    const json& d = member(j, "device");
    gg_ioctl_enter e{};
    std::string rdev = str(d, "rdev");
    unsigned maj = 0, min = 0;
    if (std::sscanf(rdev.c_str(), "%u:%u", &maj, &min) == 2) e.dev = kernel_dev(maj, min);
    e.uid = member(p, "uid").is_number_unsigned() ? p["uid"].get<uint32_t>() : UINT32_MAX;
    std::string vendor = str(d, "vendor");
    for (unsigned v = 0; v < GG_VENDOR_COUNT; v++)
      if (vendor_name(v) == vendor) e.device.vendor = static_cast<uint8_t>(v);
    e.cgroup_id = member(p, "cgroup_id").is_number_unsigned() ? p["cgroup_id"].get<uint64_t>() : 0;
    std::string c = str(p, "comm");
    std::copy_n(c.data(), std::min(c.size(), sizeof(e.comm) - 1), e.comm);  // comm stays NUL-terminated
    uint32_t grant = 0;
    if (const json& g = member(j, "grant"); g.is_object()) grant = g.value("id", 0u) ? g.value("id", 0u) : UINT32_MAX;
    bool thread_state = str(j, "reason") != "no-thread-state";
    Decision dec;
    // The gate's own function (GG_DEFINE_GATE) on the recorded bytes: what
    // could not be read then cannot now, the rules, strict profile and
    // grant decide as in the kernel. Without bytes, the class alone.
    auto raw = raw_from_json(member(j, "request"));
    if (raw) {
      e.device.kind = raw->dev_kind;
      e.device.drm_driver = raw->drm_driver;
      gg_replay_capture_c(&*raw, &policy.table, &e);
      if (opt.redecode)
        cls = e.dec.cls;
      else
        e.dec.cls = static_cast<uint8_t>(cls);
      gg_replay_decide_c(&*raw, &policy.table, &e, grant, 1, thread_state ? 1 : 0);
      dec = {e.action, e.rule, e.verdict};
    } else {
      if (opt.redecode) undecodable++;
      gg_subject subj = subject_of(e);
      subj.cls = cls;
      dec = decide(policy.table, subj, grant != 0, true);
    }
    std::string cls_name(class_name(cls));
    if (cls_name != recorded_cls) reclassified++;
    std::string was = str(j, "verdict"), now(verdict_name(dec.verdict));
    if (was == now) {
      same++;
      return true;
    }
    changed++;
    transitions[{was, now}]++;
    by_class[cls_name][was + " -> " + now]++;
    nlohmann::ordered_json ch;
    ch["seq"] = member(j, "seq");
    ch["time"] = str(j, "time");
    ch["class"] = cls_name;
    if (cls_name != recorded_cls) ch["recorded_class"] = recorded_cls;
    ch["recorded"] = was;
    ch["replayed"] = now;
    ch["action"] = action_name(dec.action);
    ch["rule"] = dec.rule && dec.rule <= policy.rules.size() ? json(policy.rules[dec.rule - 1].name) : json();
    ch["process"] = process_label(j);
    ch["pid"] = member(p, "pid");
    ch["gpu"] = gpu_label(j);
    ch["command"] = command_of(j);
    changes.push_back(std::move(ch));
    return true;
  });
  if (!r) return r.error();
  nlohmann::ordered_json out;
  out["ledger"] = dir;
  out["policy"] = policy.source;
  out["mode"] = mode_name(policy.table.mode);
  out["redecoded"] = opt.redecode;
  out["ioctl_records"] = considered;
  out["unchanged"] = same;
  out["changed"] = changed;
  out["reclassified"] = reclassified;
  out["undecodable"] = undecodable;
  out["summarized_calls"] = not_replayed;
  nlohmann::ordered_json tr = nlohmann::ordered_json::array();
  for (const auto& [k, n] : transitions) tr.push_back({{"from", k.first}, {"to", k.second}, {"count", n}});
  out["transitions"] = tr;
  nlohmann::ordered_json bc = nlohmann::ordered_json::object();
  for (const auto& [cls, m] : by_class)
    for (const auto& [t, n] : m) bc[cls][t] = n;
  out["by_class"] = bc;
  out["changes"] = changes;
  return out;
}

std::string replay_text(const nlohmann::ordered_json& r, uint64_t limit) {
  std::string o = fmt::format(
      "replay of {} under {} (mode {}{})\n"
      "ioctl records  {}\nunchanged      {}\nchanged        {}\n",
      r["ledger"].get<std::string>(), r["policy"].get<std::string>(), r["mode"].get<std::string>(),
      r["redecoded"].get<bool>() ? ", recorded bytes decoded again" : "", r["ioctl_records"].get<uint64_t>(),
      r["unchanged"].get<uint64_t>(), r["changed"].get<uint64_t>());
  if (r["reclassified"].get<uint64_t>())
    o += fmt::format("reclassified   {} (today's decoder puts them in another class than the record says)\n",
                     r["reclassified"].get<uint64_t>());
  if (r["undecodable"].get<uint64_t>())
    o += fmt::format("undecodable    {} (recorded bytes missing: decided on the recorded class)\n",
                     r["undecodable"].get<uint64_t>());
  if (r.contains("summarized_calls") && r["summarized_calls"].get<uint64_t>())
    o += fmt::format(
        "not replayed   {} calls in ioctl.summary and ioctl.counts records (their bytes were not recorded; only "
        "query, other and resource traffic, allowed, is summarized)\n",
        r["summarized_calls"].get<uint64_t>());
  if (!r["transitions"].empty()) o += "\nwhat would change\n";
  for (const auto& t : r["transitions"])
    o += fmt::format("  {:<12} -> {:<12} {:>10}\n", t["from"].get<std::string>(), t["to"].get<std::string>(),
                     t["count"].get<uint64_t>());
  for (const auto& [cls, m] : r["by_class"].items())
    for (const auto& [t, n] : m.items()) o += fmt::format("    {:<14} {:<28} {:>8}\n", cls, t, n.get<uint64_t>());
  if (!r["changes"].empty()) {
    o += fmt::format("\n{:>8} {:<29} {:<12} {:<10} {:<10} {:<16} {:<14} {}\n", "SEQ", "TIME", "CLASS", "RECORDED",
                     "REPLAYED", "PROCESS", "GPU", "COMMAND");
    uint64_t n = 0;
    for (const auto& c : r["changes"]) {
      if (n++ == limit) {
        o += fmt::format("... {} more (--limit, or --json for all)\n", r["changes"].size() - limit);
        break;
      }
      std::string t = local_time(c["time"].get<std::string>());
      o += fmt::format("{:>8} {:<29} {:<12} {:<10} {:<10} {:<16} {:<14} {}\n", c["seq"].dump(), t,
                       c["class"].get<std::string>(), c["recorded"].get<std::string>(),
                       c["replayed"].get<std::string>(), c["process"].get<std::string>().substr(0, 16),
                       c["gpu"].get<std::string>(), c["command"].get<std::string>());
    }
  }
  return o;
}

}  // namespace gpugate::ledger
