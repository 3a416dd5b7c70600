// `gpugate log prune`. Thin: arguments in, the ledger's own checks, the
// prune done by its writer (the daemon, or this process when none runs),
// output. See prune_cmd.hpp.
#include "prune_cmd.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "gpugate/control.hpp"
#include "gpugate/hostinfo.hpp"
#include "gpugate/ledger.hpp"
#include "gpugate/log_prune.hpp"
#include "gpugate/log_query.hpp"
#include "gpugate/log_verify.hpp"
#include "gpugate/paths.hpp"
#include "gpugate/ship.hpp"

namespace gpugate::cli {

namespace {

using ojson = nlohmann::ordered_json;

struct PruneArgs {
  std::string dir = paths::kLedger;
  std::string before;
  std::vector<std::string> shipped;  // gpugate log ship state files
  std::vector<std::string> keys;
  std::string socket = paths::kControlSocket;
  std::string state_dir = paths::kStateDir;
  bool dry_run = false, json = false, no_verify = false;
};

int fail(const std::string& msg, int code = 2) {
  std::fprintf(stderr, "gpugate log prune: %s\n", msg.c_str());
  return code;
}

Result<ledger::PruneCut> parse_cut(const std::string& text) {
  ledger::PruneCut cut;
  if (!text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    auto r = ledger::parse_seq_range(text);
    if (!r || !r->first) return make_error(fmt::format("--before {}: not a seq", text));
    cut.before_seq = *r->first;
    return cut;
  }
  auto t = ledger::parse_time(text);
  if (!t) return make_error(fmt::format("--before {}: {} (or a seq: digits only)", text, t.error().message));
  cut.before_unix_ns = *t;
  return cut;
}

void print(const ojson& done, const PruneArgs& a, bool dry) {
  if (a.json) {
    std::printf("%s\n", done.dump().c_str());
    return;
  }
  const auto& segs = done["segments"];
  std::printf("%s %zu segment%s (%s..%s), seq %llu..%llu (%llu records)%s\n", dry ? "would remove" : "removed",
              segs.size(), segs.size() == 1 ? "" : "s", segs.front()["segment"].get<std::string>().c_str(),
              segs.back()["segment"].get<std::string>().c_str(),
              static_cast<unsigned long long>(segs.front()["first_seq"].get<uint64_t>()),
              static_cast<unsigned long long>(segs.back()["last_seq"].get<uint64_t>()),
              static_cast<unsigned long long>(done["records"].get<uint64_t>()),
              done.contains("recorded_at")
                  ? fmt::format("; recorded as ledger.pruned at seq {}", done["recorded_at"].get<uint64_t>()).c_str()
                  : "");
  std::printf("kept from %s (seq %llu on); %s keeps the checkpoint that lets the rest verify\n",
              done["first_segment"].get<std::string>().c_str(),
              static_cast<unsigned long long>(done["first_seq"].get<uint64_t>()),
              std::string(ledger::kPruneAnchorFile).c_str());
}

// The origin the ledger's latest checkpoint signs ("gpugate/<host id>").
Result<std::string> ledger_origin_of(const std::string& dir) {
  auto latest = ledger::latest_checkpoint(dir);
  if (!latest) return latest.error();
  auto note = tlog::parse_signed_checkpoint(latest->note, "the latest checkpoint");
  if (!note) return note.error();
  return note->body.origin;
}

std::string host_of(const std::string& origin) { return origin.starts_with("gpugate/") ? origin.substr(8) : origin; }

// No daemon writes DIR: this process opens it as its writer (the lock
// refuses if one does), prunes, and signs a checkpoint with the log key of
// --state-dir when there is one.
int prune_here(const PruneArgs& a, const ledger::PruneCut& cut) {
  LedgerOptions o;
  std::string key_path = (std::filesystem::path(a.state_dir) / "log-key").string();
  struct stat st {};
  auto origin = ledger_origin_of(a.dir);
  if (!origin) return fail(origin.error().message);
  o.origin = *origin;
  o.host_id = host_of(o.origin);
  if (::stat(key_path.c_str(), &st) == 0) {
    auto key = tlog::LogKey::load_or_create(a.state_dir, o.origin);
    if (!key) return fail(key.error().message);
    o.key = std::make_shared<const tlog::LogKey>(std::move(*key));
    o.boot_id = HostInfo::load(a.state_dir).boot_id;
  }
  auto w = LedgerWriter::open(a.dir, o);
  if (!w) return fail(w.error().message);
  auto done = w->prune(cut);
  if (!done) return fail(done.error().message, 1);
  if (o.key) {
    if (auto c = w->checkpoint("prune"); !c) return fail(c.error().message, 1);
  } else {
    std::fprintf(stderr,
                 "gpugate log prune: no log key in %s: the ledger.pruned record is not signed until gpugated's next "
                 "checkpoint (pass --state-dir with gpugated's)\n",
                 a.state_dir.c_str());
  }
  print(*done, a, false);
  return 0;
}

// --shipped: the least next_seq of the state files, checked against this
// ledger's host (its latest checkpoint's origin) and its last record.
Result<uint64_t> shipped_cut(const PruneArgs& a) {
  auto origin = ledger_origin_of(a.dir);
  if (!origin) return origin.error();
  std::string host = host_of(*origin);
  auto segs = ledger::list_segments(a.dir);
  if (!segs) return segs.error();
  uint64_t next_seq = 0;
  auto walked = ledger::for_each_entry(*segs, segs->size() - 1, 0, [&](const ledger::Line& l, ledger::LineKind k) {
    ledger::Prefix p;
    if (k == ledger::LineKind::leaf && ledger::parse_prefix(l.text, p)) next_seq = p.seq + 1;
    return true;
  });
  if (!walked) return walked.error();
  return ship::shipped_before(a.shipped, host, next_seq);
}

int run_prune(const PruneArgs& a) {
  if (a.before.empty() && a.shipped.empty()) return fail("pass --before SEQ|TIME, or --shipped STATE (or both)");
  ledger::PruneCut cut;
  if (!a.before.empty()) {
    auto parsed = parse_cut(a.before);
    if (!parsed) return fail(parsed.error().message);
    cut = *parsed;
  }
  if (!a.shipped.empty()) {
    if (cut.before_unix_ns)
      return fail(
          fmt::format("--before {} is a time, and --shipped cuts at a seq: pass --before SEQ with it", a.before));
    auto shipped = shipped_cut(a);
    if (!shipped) return fail(shipped.error().message);
    cut.before_seq = cut.before_seq ? std::min(*cut.before_seq, *shipped) : *shipped;
  }
  // Evidence is removed only from a ledger that verifies.
  if (!a.no_verify) {
    ledger::VerifyOptions vo;
    for (const auto& k : a.keys) {
      auto v = tlog::load_verifier_key(k);
      if (!v) return fail(v.error().message);
      vo.keys.push_back(*v);
    }
    auto r = ledger::verify_ledger(a.dir, vo);
    if (!r) return fail(r.error().message);
    if (r->exit_code != ledger::kVerifyOk)
      return fail(fmt::format("{} does not verify (gpugate log verify exits {}): {}; nothing was pruned: a ledger is "
                              "pruned only while it verifies, so that what goes was intact",
                              a.dir, r->exit_code, r->problem),
                  1);
  }
  auto segs = ledger::list_segments(a.dir);
  if (!segs) return fail(segs.error().message);
  auto plan = ledger::plan_prune(a.dir, cut, segs->back().number - 1);
  if (!plan) return fail(plan.error().message, 1);
  if (a.dry_run) {
    print(plan->json(), a, true);
    return 0;
  }
  if (!a.socket.empty()) {
    std::error_code ec;
    ojson req = {{"op", "prune"}, {"ledger", std::filesystem::absolute(a.dir, ec).string()}};
    if (cut.before_seq) req["before_seq"] = *cut.before_seq;
    if (cut.before_unix_ns) req["before_ns"] = *cut.before_unix_ns;
    auto answer = control_call(a.socket, req);
    if (answer) {
      if ((*answer).value("ok", false) != true)
        return fail(fmt::format("gpugated refused: {}", (*answer).value("error", std::string("(no reason)"))), 1);
      print(ojson::parse((*answer)["pruned"].dump()), a, false);
      return 0;
    }
    // No daemon there: this process writes the record itself.
    if (answer.error().code != ENOENT && answer.error().code != ECONNREFUSED) return fail(answer.error().message);
  }
  return prune_here(a, cut);
}

}  // namespace

std::function<std::optional<int>()> add_prune_command(CLI::App& log) {
  auto a = std::make_shared<PruneArgs>();
  auto* c = log.add_subcommand(
      "prune",
      "Remove the oldest sealed segments, keeping what lets the rest verify (docs/ledger.md, \"Pruning\").\n"
      "A segment goes when all its records come before --before (a seq, or a time) and it ends with its closing\n"
      "checkpoint record; the newest sealed segment and the one being written always stay. The ledger must verify\n"
      "first. DIR/pruned.json keeps the last removed segment's closing checkpoint record, from which gpugate log\n"
      "verify proves the records kept against the signed checkpoints, and says what was removed. The prune is\n"
      "recorded as a ledger.pruned record by the ledger's writer: gpugated over its control socket (root only),\n"
      "or this command when no daemon runs (it signs a checkpoint with --state-dir's log key). Ship the segments\n"
      "off the host first (gpugate log ship), or pass --shipped with its state file so that only what was shipped\n"
      "goes: a pruned record is gone from this host.\n\n"
      "Exit status: 0 pruned (or, with --dry-run, would prune); 1 nothing to prune, the ledger does not verify, or\n"
      "gpugated refused; 2 bad arguments or unreadable input.");
  c->add_option("DIR", a->dir, "Ledger directory (gpugated --ledger)")->capture_default_str();
  c->add_option("--before", a->before,
                "The cut: a seq (digits: records with a smaller seq go), or a time (RFC 3339, a date, or ago: 30d)");
  c->add_option("--shipped", a->shipped,
                "State file of a gpugate log ship of this ledger (repeatable): cut at the first record that one of "
                "them has not shipped (with --before SEQ, at the earlier of the two)");
  c->add_option("--key", a->keys, "Verify with this verifier key (log-key.pub) before pruning; repeatable");
  c->add_option("--control-socket", a->socket, "gpugated's control socket; '' prunes without asking a daemon")
      ->capture_default_str();
  c->add_option("--state-dir", a->state_dir, "Where the log key is, when no daemon runs")->capture_default_str();
  c->add_flag("--dry-run", a->dry_run, "Say what would be removed, remove nothing");
  c->add_flag("--no-verify", a->no_verify, "Do not verify the ledger first (it was just verified)");
  c->add_flag("--json", a->json, "The result as one JSON object");
  return [=]() -> std::optional<int> {
    if (!*c) return std::nullopt;
    return run_prune(*a);
  };
}

}  // namespace gpugate::cli
