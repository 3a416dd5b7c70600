// The watcher's two halves: a thread that samples every source on a
// schedule (and soon after a judged command), and the daemon loop's side,
// which compares each sample with the last, writes state.sample records and
// decides each change once its settle time has passed.
#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "gpugate/decode.hpp"
#include "gpugate/hostinfo.hpp"
#include "gpugate/log_reader.hpp"
#include "gpugate/pipeline.hpp"
#include "gpugate/watch.hpp"

namespace gpugate::watch {
namespace {

constexpr size_t kMaxQueued = 64;
constexpr std::chrono::milliseconds kMinEarlyGap{100};

// A member of the given JSON type, or nothing: the ledger's tail is input,
// and a record with a member of the wrong type is skipped, never thrown on.
const Json* member_of(const Json& j, const char* key, Json::value_t type) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  if (it == j.end()) return nullptr;
  // A count or a time: any integer that is not negative (JSON text parses as
  // unsigned, a record built in code may hold a signed one).
  bool ok = type == Json::value_t::number_unsigned
                ? it->is_number_unsigned() || (it->is_number_integer() && it->get<int64_t>() >= 0)
                : it->type() == type;
  return ok ? &*it : nullptr;
}

Json gpu_json(const std::string& pci, const std::string& uuid, const std::vector<std::string>& nodes) {
  return {{"pci", pci}, {"uuid", uuid.empty() ? Json(nullptr) : Json(uuid)}, {"nodes", nodes}};
}

bool judged(const std::string& field) {
  auto spec = field_spec(field);
  return spec && spec->kind != FieldKind::Telemetry;
}

std::vector<std::string> names(const Json& v) {
  std::vector<std::string> out;
  if (v.is_array())
    for (const auto& r : v)
      if (r.is_string()) out.push_back(r.get<std::string>());
  return out;
}

// A throttle reason set changed in a way worth judging: a new reason that
// holds the clocks down.
bool new_throttle(const Json& before, const Json& after) {
  auto b = names(before);
  for (const auto& r : names(after))
    if (throttle_reason(r) && std::find(b.begin(), b.end(), r) == b.end()) return true;
  return false;
}

}  // namespace

Watcher::Watcher(WatchOptions options, std::vector<std::unique_ptr<StateSource>> sources, std::vector<PciGpu> gpus)
    : options_(std::move(options)),
      sources_(std::move(sources)),
      gpus_(std::move(gpus)),
      explainer_(options_.window_ms * 1000000, options_.boot_id) {}

Watcher::~Watcher() { stop(); }

const PciGpu* Watcher::gpu(const std::string& pci) const {
  for (const auto& g : gpus_)
    if (g.address == pci) return &g;
  return nullptr;
}

std::vector<std::string> Watcher::source_names() const {
  std::vector<std::string> out;
  for (const auto& s : sources_) out.push_back(s->name());
  return out;
}

void Watcher::seed(const std::vector<Json>& tail) {
  using T = Json::value_t;
  for (const auto& rec : tail) {
    const Json* type = member_of(rec, "type", T::string);
    if (!type) continue;
    if (*type != "state.sample") {
      explainer_.note(rec);
      continue;
    }
    const Json* boot = member_of(rec, "boot_id", T::string);
    const Json* gpu = member_of(rec, "gpu", T::object);
    const Json* pci = gpu ? member_of(*gpu, "pci", T::string) : nullptr;
    const Json* values = member_of(rec, "values", T::object);
    const Json* at = member_of(rec, "boottime_ns", T::number_unsigned);
    const Json* seq = member_of(rec, "seq", T::number_unsigned);
    if (!boot || *boot != options_.boot_id || !pci || !values || !at || !seq) continue;
    Known& k = known_[pci->get<std::string>()];
    k.values.clear();
    for (const auto& [name, v] : values->items()) k.values[name] = v;
    k.boot_ns = at->get<uint64_t>();
    k.seq = seq->get<uint64_t>();
    k.seeded = true;
  }
}

void Watcher::start() {
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void Watcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watcher::sample_soon() {
  bool asked;  // already: a flood of commands wakes the sampler once
  {
    std::lock_guard<std::mutex> lock(mu_);
    asked = std::exchange(soon_, true);
  }
  if (!asked) cv_.notify_all();
}

void Watcher::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    Taken t = take();
    ingest(t.boot_ns, t.realtime_ns, std::move(t.gpus));
    auto taken_at = std::chrono::steady_clock::now();
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(options_.interval_ms), [this] { return stopping_ || soon_; });
    // An early sample at most once per gap: a flood of commands must not
    // make the sampler spin (soon_ stays set meanwhile, so no wake-ups).
    auto gap = std::min(std::chrono::milliseconds(options_.interval_ms), kMinEarlyGap);
    cv_.wait_until(lock, taken_at + gap, [this] { return stopping_; });
    soon_ = false;
  }
}

Watcher::Taken Watcher::take() {
  std::map<std::string, GpuSample> merged;
  for (auto& src : sources_) {
    for (auto& s : src->sample()) {
      GpuSample& m = merged[s.pci];
      m.pci = s.pci;
      if (m.uuid.empty()) m.uuid = s.uuid;
      m.source = m.source.empty() ? s.source : m.source + "+" + s.source;
      for (auto& [k, v] : s.values) m.values[k] = std::move(v);
      for (auto& e : s.events) m.events.push_back(std::move(e));
    }
  }
  Taken t;
  t.boot_ns = boottime_ns();  // after the reads: a command that ran before any of them is earlier
  t.realtime_ns = static_cast<int64_t>(t.boot_ns) + realtime_offset_ns();
  for (auto& [pci, s] : merged) t.gpus.push_back(std::move(s));
  return t;
}

void Watcher::ingest(uint64_t boot_ns, int64_t realtime_ns, std::vector<GpuSample> gpus) {
  std::lock_guard<std::mutex> lock(mu_);
  if (taken_.size() >= kMaxQueued) {
    taken_.pop_front();
    taken_dropped_++;
  }
  taken_.push_back({boot_ns, realtime_ns, std::move(gpus)});
}

void Watcher::note(const Json& record) {
  const Json* t = member_of(record, "type", Json::value_t::string);
  std::string type = t ? t->get<std::string>() : std::string();
  if (type == "ioctl" || type == "knob.write" || type == "knob.mmap") {
    explainer_.note(record);
    sample_soon();  // see its effect while the command is fresh
  } else if (type.starts_with("grant.")) {
    explainer_.note(record);
  }
}

void Watcher::note_command(const CommandSeen& command) {
  explainer_.note_command(command);
  sample_soon();
}

void Watcher::poll(uint64_t now_ns, const RecordFn& record) {
  std::deque<Taken> batch;
  uint64_t dropped = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(taken_);
    dropped = std::exchange(taken_dropped_, 0);
  }
  if (dropped)
    record("gap", {{"class", "state"},
                   {"lost_records", dropped},
                   {"reason", "the daemon's loop fell behind the GPU state sampler: samples were dropped"}});
  for (const auto& t : batch) {
    samples_taken_++;
    handle(t, record);
  }
  std::vector<Pending> due;
  std::erase_if(pending_, [&](const Pending& p) {
    if (p.due_ns > now_ns) return false;
    due.push_back(p);
    return true;
  });
  for (const auto& p : due) decide(p, record);
  explainer_.forget_before(now_ns);
}

void Watcher::handle(const Taken& t, const RecordFn& record) {
  for (const auto& s : t.gpus) {
    Known& k = known_[s.pci];
    const PciGpu* g = gpu(s.pci);
    std::vector<std::string> nodes = g ? g->nodes : std::vector<std::string>{};
    bool first = k.values.empty() && !k.seeded;
    std::vector<std::string> changed;
    std::vector<Change> changes;
    if (!first) {
      std::vector<std::string> fields;
      for (const auto& [name, v] : k.values) fields.push_back(name);
      for (const auto& [name, v] : s.values)
        if (!k.values.count(name)) fields.push_back(name);
      for (const auto& name : fields) {
        auto b = k.values.find(name);
        auto a = s.values.find(name);
        Json before = b == k.values.end() ? Json(nullptr) : b->second;
        Json after = a == s.values.end() ? Json(nullptr) : a->second;
        // A field one round could not read (an attribute that failed once)
        // is no change; a GPU gone is said by pci.present and nvml.gpu_lost.
        if (before == after || after.is_null() || before.is_null() || !judged(name)) continue;
        if (field_spec(name)->kind == FieldKind::Throttle && !new_throttle(before, after)) continue;
        changed.push_back(name);
        Change c;
        c.pci = s.pci;
        c.uuid = s.uuid;
        c.nodes = nodes;
        c.field = name;
        c.before = before;
        c.after = after;
        c.before_ns = k.boot_ns;
        c.after_ns = t.boot_ns;
        c.after_realtime_ns = t.realtime_ns;
        auto r = s.values.find("clocks.event_reasons");
        if (r != s.values.end()) c.reasons = names(r->second);
        changes.push_back(std::move(c));
      }
    }
    bool restart = k.seeded && k.seq && k.values.size() && !changes.empty() && k.restarted_once == false;
    if (first || !changes.empty() || !s.events.empty()) {
      Json values = Json::object();
      for (const auto& [name, v] : s.values) values[name] = v;
      Json body{{"gpu", gpu_json(s.pci, s.uuid, nodes)},
                {"reason", first              ? "start"
                           : !changes.empty() ? (restart ? "change across a daemon restart" : "change")
                                              : "event"},
                {"source", s.source},
                {"values", std::move(values)},
                {"changed", changed}};
      if (k.seeded && !k.restarted_once) body["previous_sample_seq"] = k.seq;
      if (!s.events.empty()) body["events"] = s.events;
      uint64_t seq = record("state.sample", std::move(body));
      for (auto& c : changes) pending_.push_back({std::move(c), seq, t.boot_ns + options_.settle_ms * 1000000});
      k.seq = seq;
    }
    k.restarted_once = true;
    k.values = s.values;
    k.boot_ns = t.boot_ns;
  }
}

void Watcher::decide(const Pending& p, const RecordFn& record) {
  const Change& c = p.change;
  Explanation ex = explainer_.explain(c);
  if (ex.kind == "not-a-throttle") return;
  auto spec = field_spec(c.field);
  Json classes = Json::array();
  if (spec)
    for (unsigned cls : spec->classes) classes.push_back(class_name(cls));
  Json body{{"gpu", gpu_json(c.pci, c.uuid, c.nodes)},
            {"field", c.field},
            {"what", spec ? spec->what : std::string()},
            {"before", c.before},
            {"after", c.after},
            {"sample_seq", p.sample_seq},
            {"window",
             {{"from_boottime_ns", c.before_ns > explainer_.window_ns() ? c.before_ns - explainer_.window_ns() : 0},
              {"to_boottime_ns", c.after_ns},
              {"window_ms", options_.window_ms}}}};
  if (!c.reasons.empty()) body["clock_event_reasons"] = c.reasons;
  if (ex.explained()) {
    Json by = ex.detail.is_object() ? ex.detail : Json::object();
    by["kind"] = ex.kind;
    if (ex.has_seq) by["seq"] = ex.seq;
    body["explained_by"] = std::move(by);
    explained_++;
    record("state.explained", std::move(body));
    return;
  }
  body["classes_that_would_explain"] = classes;
  body["candidates"] = ex.candidates;
  if (ex.detail.is_object()) body["detail"] = ex.detail;
  body["note"] = fmt::format(
      "no recorded command, grant, allowed reset or hardware protection explains this change of {}: the GPU was "
      "changed behind the gate (firmware, a path no hook sees, or tampering)",
      c.field);
  unexplained_++;
  record("state.unexplained", std::move(body));
}

Json Watcher::status() const {
  return {{"sources", source_names()},       {"gpus", known_.size()},      {"interval_ms", options_.interval_ms},
          {"window_ms", options_.window_ms}, {"samples", samples_taken_},  {"pending", pending_.size()},
          {"explained", explained_},         {"unexplained", unexplained_}};
}

std::vector<Json> ledger_tail(const std::string& dir, uint64_t max_bytes) {
  std::vector<Json> out;
  auto segments = ledger::list_segments(dir, true);
  if (!segments || segments->empty()) return out;
  // The newest segments that together hold max_bytes, read from the cut on.
  size_t first = segments->size();
  uint64_t bytes = 0;
  while (first > 0 && bytes < max_bytes) bytes += (*segments)[--first].size;
  uint64_t skip = bytes > max_bytes ? bytes - max_bytes : 0;
  std::vector<ledger::Segment> tail(segments->begin() + static_cast<std::ptrdiff_t>(first), segments->end());
  (void)ledger::for_each_line(tail, [&](const ledger::Line& line) {
    if (line.segment == &tail.front() && line.offset < skip) return true;
    if (!line.terminated) return true;
    ledger::Prefix p;
    if (!ledger::parse_prefix(line.text, p)) return true;
    bool want = p.type == "ioctl" || p.type == "knob.write" || p.type == "knob.mmap" || p.type == "state.sample" ||
                p.type.starts_with("grant.");
    if (!want) return true;
    // Only the judged classes' commands matter: skip the bulk unparsed.
    if (p.type == "ioctl" && line.text.find("\"class\":\"query\"") != std::string_view::npos) return true;
    auto rec = Json::parse(line.text, nullptr, false);
    if (!rec.is_discarded() && rec.is_object()) out.push_back(std::move(rec));
    return true;
  });
  return out;
}

}  // namespace gpugate::watch
