// gpugate log timeline: GPUs as lanes over time, commands coloured by class,
// verdicts marked, gaps and daemon down time shaded. Hand-written SVG; the
// HTML form wraps it with a legend and a summary (no script).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>

#include <fmt/format.h>

#include "gpugate/hostinfo.hpp"
#include "gpugate/log_query.hpp"

namespace gpugate::ledger {

namespace {

using json = nlohmann::json;

// Most severe first; the colour of a busy pixel is its most severe class.
struct ClassStyle {
  const char* name;
  const char* color;
};
constexpr ClassStyle kClasses[] = {
    {"power.off", "#d62728"},    {"gpu.reset", "#8c564b"},   {"power.limit", "#ff7f0e"}, {"clock.limit", "#bcbd22"},
    {"perf.state", "#e377c2"},   {"bar.map", "#9467bd"},     {"ecc.config", "#1f77b4"},  {"mig.config", "#17becf"},
    {"compute.mode", "#2ca02c"}, {"persistence", "#98df8a"}, {"link.config", "#aec7e8"}, {"cc.mode", "#393b79"},
    {"resource", "#c5b0d5"},     {"other", "#c49c94"},       {"query", "#9e9e9e"},       {"unknown", "#d0d0d0"},
};
constexpr size_t kNumClasses = sizeof(kClasses) / sizeof(kClasses[0]);

size_t class_index(const std::string& c) {
  for (size_t i = 0; i < kNumClasses; i++)
    if (c == kClasses[i].name) return i;
  return kNumClasses - 1;
}

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<')
      o += "&lt;";
    else if (c == '>')
      o += "&gt;";
    else if (c == '&')
      o += "&amp;";
    else if (c == '"')
      o += "&quot;";
    else
      o += c;
  }
  return o;
}

const json& m(const json& j, const char* k) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(k);
  return it == j.end() ? kNull : *it;
}
std::string s(const json& j) { return j.is_string() ? j.get<std::string>() : j.is_null() ? "" : j.dump(); }

struct Event {
  int64_t t;
  uint16_t lane;
  uint8_t cls;
  uint8_t verdict;  // 0 allowed, 1 would-deny, 2 denied
};

struct Band {
  int64_t from, to;
  std::string what;
  bool gap;  // true: records lost; false: daemon not running
};

// A change of a GPU's state the watcher judged (state.explained/unexplained).
struct StateMark {
  int64_t t;
  std::string pci;
  bool unexplained;
  std::string what;
};

struct Cell {
  uint32_t count = 0;
  uint8_t cls = 255;
  uint8_t verdict = 0;
  uint32_t per_class[kNumClasses] = {};
};

}  // namespace

Result<uint64_t> timeline(const std::string& dir, const Filter& f, const std::string& out_path, bool html) {
  std::vector<Event> events;
  std::vector<Band> bands;
  std::map<std::string, uint16_t> lanes;
  std::vector<std::string> lane_names;
  int64_t t0 = INT64_MAX, t1 = INT64_MIN, last_t = 0, stop_t = 0;
  bool stopped = false;
  uint64_t counts[3] = {}, per_class[kNumClasses] = {}, lost = 0, unexplained = 0, explained = 0;
  std::vector<StateMark> marks;
  auto r = for_each_record(dir, [&](const Record& rec) {
    const json& j = rec.rec;
    if (j.is_discarded() || !m(j, "realtime_ns").is_number_integer()) return true;
    int64_t t = m(j, "realtime_ns").get<int64_t>();
    std::string type = s(m(j, "type"));
    // Down time is a property of the whole ledger, filters aside.
    if (type == "daemon.stop") {
      stopped = true;
      stop_t = t;
    } else if (type == "daemon.start" && last_t) {
      bands.push_back({stopped ? stop_t : last_t, t,
                       stopped ? "gpugated stopped" : "gpugated not running (no clean stop: crash or kill)", false});
      stopped = false;
    }
    last_t = t;
    if (!f.matches(j)) return true;
    if (type == "gap") {
      uint64_t n = m(j, "lost_records").is_number_unsigned() ? m(j, "lost_records").get<uint64_t>() : 0;
      lost += n;
      bands.push_back({t, t, fmt::format("{} {} records lost ({})", n, s(m(j, "class")), s(m(j, "reason"))), true});
    }
    if (type == "state.unexplained" || type == "state.explained") {
      bool bad = type == "state.unexplained";
      (bad ? unexplained : explained)++;
      std::string by = bad ? "NOTHING explains it" : "explained by " + s(m(m(j, "explained_by"), "kind"));
      if (m(m(j, "explained_by"), "seq").is_number()) by += " #" + s(m(m(j, "explained_by"), "seq"));
      marks.push_back({t, s(m(m(j, "gpu"), "pci")), bad,
                       fmt::format("{} {} -> {}: {}", s(m(j, "field")), s(m(j, "before")), s(m(j, "after")), by)});
      return true;
    }
    if (type != "ioctl") return true;
    const json& d = m(j, "device");
    std::string lane = s(m(d, "kind"));
    if (m(d, "gpu_index").is_number())
      lane += " " + m(d, "gpu_index").dump();
    else if (!s(m(d, "rdev")).empty())
      lane += " " + s(m(d, "rdev"));
    if (!s(m(d, "pci")).empty()) lane += " " + s(m(d, "pci"));
    auto it = lanes.find(lane);
    if (it == lanes.end()) {
      if (lanes.size() >= 64) return true;  // keep the picture readable
      it = lanes.emplace(lane, static_cast<uint16_t>(lane_names.size())).first;
      lane_names.push_back(lane);
    }
    std::string v = s(m(j, "verdict"));
    uint8_t vd = v == "denied" ? 2 : v == "would-deny" ? 1 : 0;
    size_t ci = class_index(s(m(m(j, "decoded"), "class")));
    events.push_back({t, it->second, static_cast<uint8_t>(ci), vd});
    counts[vd]++;
    per_class[ci]++;
    t0 = std::min(t0, t);
    t1 = std::max(t1, t);
    return true;
  });
  if (!r) return r.error();
  // A state change goes on its GPU's lane: the one whose node names that PCI
  // address, or a lane of its own.
  std::vector<uint16_t> mark_lane;
  for (const auto& mk : marks) {
    uint16_t lane = UINT16_MAX;
    for (size_t i = 0; i < lane_names.size() && !mk.pci.empty(); i++)
      if (lane_names[i].ends_with(" " + mk.pci)) lane = static_cast<uint16_t>(i);
    if (lane == UINT16_MAX && lane_names.size() < 64) {
      std::string name = "gpu " + (mk.pci.empty() ? std::string("?") : mk.pci);
      auto it = lanes.find(name);
      if (it == lanes.end()) {
        it = lanes.emplace(name, static_cast<uint16_t>(lane_names.size())).first;
        lane_names.push_back(name);
      }
      lane = it->second;
    }
    mark_lane.push_back(lane);
    t0 = std::min(t0, mk.t);
    t1 = std::max(t1, mk.t);
  }
  if (events.empty() && marks.empty()) {
    t0 = 0;
    t1 = 1;
  }
  for (const auto& b : bands)
    if ((!events.empty() || !marks.empty()) && b.to >= t0 && b.from <= t1) {
      t0 = std::min(t0, b.from);
      t1 = std::max(t1, b.to);
    }
  if (t1 <= t0) t1 = t0 + 1000000000;
  const int left = 190, width = 1200, lane_h = 28, top = 40;
  const int lanes_n = std::max<int>(1, static_cast<int>(lane_names.size()));
  const int height = top + lanes_n * lane_h + 110;
  auto x_of = [&](int64_t t) {
    return left + static_cast<double>(t - t0) / static_cast<double>(t1 - t0) * (width - 1);
  };
  std::vector<Cell> cells(static_cast<size_t>(lanes_n) * width);
  for (const auto& e : events) {
    int col = std::clamp(static_cast<int>(x_of(e.t)) - left, 0, width - 1);
    Cell& c = cells[static_cast<size_t>(e.lane) * width + col];
    c.count++;
    c.cls = std::min(c.cls, e.cls);
    c.verdict = std::max(c.verdict, e.verdict);
    c.per_class[e.cls]++;
  }
  double col_ns = static_cast<double>(t1 - t0) / width;

  std::string svg;
  svg += fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n",
      left + width + 20, height, left + width + 20, height);
  svg +=
      "<defs><pattern id=\"down\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
      "patternTransform=\"rotate(45)\"><rect width=\"3\" height=\"6\" fill=\"#bbb\"/></pattern></defs>\n";
  svg += fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"white\"/>\n", left + width + 20, height);
  svg +=
      fmt::format("<text x=\"{}\" y=\"20\" font-size=\"14\" font-weight=\"bold\">gpugate ledger {}: {} to {}</text>\n",
                  left, esc(dir), format_utc(t0, 3), format_utc(t1, 3));
  int lanes_bottom = top + lanes_n * lane_h;
  // Lanes.
  for (int i = 0; i < lanes_n; i++) {
    int y = top + i * lane_h;
    svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>\n", left, y, width, lane_h,
                       i % 2 ? "#fafafa" : "#f0f0f0");
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left - 6, y + lane_h / 2 + 4,
                       esc(i < static_cast<int>(lane_names.size()) ? lane_names[i] : "(no GPU commands)"));
  }
  // Down time and gaps, across every lane.
  for (const auto& b : bands) {
    if (b.to < t0 || b.from > t1) continue;
    double x0 = x_of(b.from), x1 = std::max(x_of(b.to), x0 + 2);
    svg += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{}\" width=\"{:.1f}\" height=\"{}\" fill=\"{}\" opacity=\"{}\"><title>{}: {} to "
        "{}</title></rect>\n",
        x0, top, x1 - x0, lanes_bottom - top, b.gap ? "#ff0000" : "url(#down)", b.gap ? 0.5 : 0.8, esc(b.what),
        format_utc(b.from, 3), format_utc(b.to, 3));
  }
  // Commands, one tick per lane and pixel column.
  for (int lane = 0; lane < lanes_n; lane++) {
    for (int col = 0; col < width; col++) {
      const Cell& c = cells[static_cast<size_t>(lane) * width + col];
      if (!c.count) continue;
      int y = top + lane * lane_h;
      std::string tip;
      for (size_t k = 0; k < kNumClasses; k++)
        if (c.per_class[k]) tip += fmt::format(" {} {}", kClasses[k].name, c.per_class[k]);
      int64_t cs = t0 + static_cast<int64_t>(col * col_ns);
      svg += fmt::format(
          "<rect x=\"{}\" y=\"{}\" width=\"1.5\" height=\"{}\" fill=\"{}\"><title>{} ({:.0f} ms): {} "
          "command(s):{}{}</title></rect>\n",
          left + col, y + 6, lane_h - 12, kClasses[c.cls].color, format_utc(cs, 3), col_ns / 1e6, c.count, tip,
          c.verdict == 2   ? ", DENIED"
          : c.verdict == 1 ? ", would deny"
                           : "");
      if (c.verdict)
        svg += fmt::format("<path d=\"M{} {} l-4 -6 h8 z\" fill=\"{}\"/>\n", left + col, y + 7,
                           c.verdict == 2 ? "#b00000" : "#ff9900");
    }
  }
  // The watcher's judgements: a magenta diamond where nothing explains a
  // change of the GPU's state, a grey dot where something does.
  for (size_t i = 0; i < marks.size(); i++) {
    if (mark_lane[i] == UINT16_MAX) continue;
    const auto& mk = marks[i];
    double x = x_of(mk.t);
    int y = top + mark_lane[i] * lane_h + lane_h / 2;
    if (mk.unexplained)
      svg += fmt::format(
          "<path d=\"M{:.1f} {} l6 6 l-6 6 l-6 -6 z\" fill=\"#e000e0\" stroke=\"black\"><title>{} UNEXPLAINED "
          "state change: {}</title></path>\n",
          x, y - 6, format_utc(mk.t, 3), esc(mk.what));
    else
      svg += fmt::format(
          "<circle cx=\"{:.1f}\" cy=\"{}\" r=\"3\" fill=\"#777\"><title>{} state change: {}</title>"
          "</circle>\n",
          x, y, format_utc(mk.t, 3), esc(mk.what));
  }
  // Time axis.
  static const int64_t kSteps[] = {1000000,       10000000,       100000000,      1000000000,
                                   10000000000,   60000000000,    300000000000,   900000000000,
                                   3600000000000, 21600000000000, 86400000000000, 604800000000000};
  int64_t step = kSteps[0];
  for (int64_t st : kSteps) {
    step = st;
    if ((t1 - t0) / st <= 10) break;
  }
  for (int64_t t = (t0 / step + 1) * step; t <= t1; t += step) {
    double x = x_of(t);
    std::string label = format_utc(t, step < 1000000000 ? 3 : 0);
    label = step >= 86400000000000 ? label.substr(0, 10) : label.substr(11, step < 1000000000 ? 12 : 8);
    svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\" stroke=\"#999\"/>\n", x, top, x,
                       lanes_bottom + 4);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", x, lanes_bottom + 16, label);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">UTC</text>\n", left - 6, lanes_bottom + 16);
  // Legend.
  int ly = lanes_bottom + 36, lx = left;
  for (size_t k = 0; k < kNumClasses; k++) {
    if (!per_class[k] && k != 0) continue;
    svg += fmt::format(
        "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{} ({})"
        "</text>\n",
        lx, ly - 9, kClasses[k].color, lx + 14, ly, kClasses[k].name, per_class[k]);
    lx += 150;
    if (lx > left + width - 150) {
      lx = left;
      ly += 16;
    }
  }
  ly += 20;
  svg += fmt::format(
      "<path d=\"M{} {} l-4 -6 h8 z\" fill=\"#b00000\"/><text x=\"{}\" y=\"{}\">denied ({})</text>"
      "<path d=\"M{} {} l-4 -6 h8 z\" fill=\"#ff9900\"/><text x=\"{}\" y=\"{}\">would deny ({})</text>"
      "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"#ff0000\" opacity=\"0.5\"/><text x=\"{}\" y=\"{}\">"
      "records lost ({})</text>"
      "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"url(#down)\"/><text x=\"{}\" y=\"{}\">gpugated not "
      "running</text>\n",
      left + 4, ly, left + 12, ly, counts[2], left + 164, ly, left + 172, ly, counts[1], left + 320, ly - 9, left + 334,
      ly, lost, left + 480, ly - 9, left + 494, ly);
  ly += 20;
  svg += fmt::format(
      "<path d=\"M{} {} l6 6 l-6 6 l-6 -6 z\" fill=\"#e000e0\" stroke=\"black\"/><text x=\"{}\" y=\"{}\">GPU state "
      "change nothing explains ({})</text><circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"#777\"/><text x=\"{}\" "
      "y=\"{}\">explained state change ({})</text>\n",
      left + 4, ly - 12, left + 14, ly, unexplained, left + 324, ly - 4, left + 334, ly, explained);
  svg += "</svg>\n";
  ly += 10;
  (void)ly;

  std::ofstream out(out_path, std::ios::trunc);
  if (!out)
    return make_error(
        fmt::format("timeline {}: cannot write: {}; choose a writable -o path", out_path, std::strerror(errno)));
  if (!html) {
    out << svg;
  } else {
    out << "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>gpugate timeline</title>\n"
           "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
           "padding:2px 8px;text-align:right}th{text-align:left}</style></head><body>\n";
    out << fmt::format("<h1>GPU control commands, {} to {}</h1>\n", format_utc(t0, 3), format_utc(t1, 3));
    out << fmt::format(
        "<p>Ledger <code>{}</code>. One lane per GPU device node; each tick is the commands of one "
        "pixel ({:.0f} ms), coloured by the most severe class among them. Triangles mark commands "
        "the policy denied (dark red) or would have denied (orange). Red bands: records lost in the "
        "kernel (gap records); hatched bands: the daemon was not running. Magenta diamonds: a change "
        "of the GPU's state (power limit, clocks, power) that no recorded command, grant, allowed reset "
        "or hardware protection explains. Hover for details.</p>\n",
        esc(dir), col_ns / 1e6);
    out << svg;
    out << "<h2>Summary</h2>\n<table><tr><th>class</th><th>commands</th></tr>\n";
    for (size_t k = 0; k < kNumClasses; k++)
      if (per_class[k])
        out << fmt::format("<tr><th><span style=\"color:{}\">&#9632;</span> {}</th><td>{}</td></tr>\n",
                           kClasses[k].color, kClasses[k].name, per_class[k]);
    out << fmt::format(
        "<tr><th>allowed</th><td>{}</td></tr><tr><th>would deny</th><td>{}</td></tr><tr><th>denied</th>"
        "<td>{}</td></tr><tr><th>records lost</th><td>{}</td></tr>\n"
        "<tr><th>GPU state changes nothing explains</th><td>{}</td></tr><tr><th>explained state changes</th>"
        "<td>{}</td></tr>\n",
        counts[0], counts[1], counts[2], lost, unexplained, explained);
    out << "</table>\n<h2>Gaps and down time</h2>\n<ul>\n";
    for (const auto& b : bands)
      out << fmt::format("<li>{} to {}: {}</li>\n", format_utc(b.from, 3), format_utc(b.to, 3), esc(b.what));
    if (bands.empty()) out << "<li>none</li>\n";
    out << "</ul>\n<p>Verify the ledger before relying on this picture: <code>gpugate log verify " << esc(dir)
        << " --key log-key.pub</code>.</p>\n</body></html>\n";
  }
  out.close();
  if (!out) return make_error(fmt::format("timeline {}: write failed", out_path));
  return static_cast<uint64_t>(events.size() + marks.size());
}

}  // namespace gpugate::ledger
