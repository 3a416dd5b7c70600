// `gpugate log ...`. Thin: arguments in, library calls, output. See log_cmd.hpp.
#include "log_cmd.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>

#include <fmt/format.h>

#include "gpugate/log_query.hpp"
#include "gpugate/log_reader.hpp"
#include "gpugate/log_verify.hpp"
#include "gpugate/paths.hpp"
#include "gpugate/policy.hpp"
#include "prune_cmd.hpp"
#include "ship_cmd.hpp"

namespace gpugate::cli {

namespace {

using namespace gpugate::ledger;

struct FilterArgs {
  std::string since, until, seq;
  std::vector<std::string> classes, verdicts, types, processes, gpus, rules;
};

struct LogArgs {
  std::string dir = paths::kLedger;
  std::vector<std::string> keys, checkpoints;
  bool no_local = false, json = false, no_redecode = false;
  bool progress = false, no_progress = false;  // default: progress only on a terminal
  std::string from, out, record, record_out, proof, policy, format;
  uint64_t seq = 0, limit = UINT64_MAX, replay_limit = 50;
  FilterArgs f;
  std::vector<std::string> argv;
};

constexpr const char* kExitFooter =
    "Exit status: 0 success, 2 bad arguments or unreadable input (the message names the file and the fix).";

void add_dir(CLI::App* c, LogArgs& a) {
  c->add_option("DIR", a.dir, "Ledger directory (gpugated --ledger)")->capture_default_str();
}

void add_filters(CLI::App* c, FilterArgs& f) {
  c->add_option("--since", f.since, "Records at or after TIME: RFC 3339 (2026-11-28T12:00:00Z), a date, or ago (2h)");
  c->add_option("--until", f.until, "Records before TIME (same forms)");
  c->add_option("--class", f.classes, "Command class, e.g. power.off (repeatable, or comma-separated)")->delimiter(',');
  c->add_option("--verdict", f.verdicts, "allowed, would-deny or denied (repeatable)")->delimiter(',');
  c->add_option("--process", f.processes, "PID, command name, or part of the executable path (repeatable)");
  c->add_option("--gpu", f.gpus, "GPU index, PCI address, device number (195:0) or node path (repeatable)");
  c->add_option("--rule", f.rules, "Policy rule name or action (require-signature, deny, ...) (repeatable)");
  c->add_option("--type", f.types, "Record type: ioctl, gap, checkpoint, daemon.start, ... (repeatable)")
      ->delimiter(',');
  c->add_option("--seq", f.seq, "Sequence numbers: N, A..B, A.. or ..B");
}

Result<Filter> make_filter(const FilterArgs& a) {
  Filter f;
  if (!a.since.empty()) {
    auto t = parse_time(a.since);
    if (!t) return make_error("--since: " + t.error().message);
    f.since_ns = *t;
  }
  if (!a.until.empty()) {
    auto t = parse_time(a.until);
    if (!t) return make_error("--until: " + t.error().message);
    f.until_ns = *t;
  }
  if (!a.seq.empty()) {
    auto r = parse_seq_range(a.seq);
    if (!r) return make_error("--seq: " + r.error().message);
    f.seq_from = r->first;
    f.seq_to = r->second;
  }
  f.classes = a.classes;
  f.verdicts = a.verdicts;
  f.types = a.types;
  f.processes = a.processes;
  f.gpus = a.gpus;
  f.rules = a.rules;
  return f;
}

int fail(const char* cmd, const std::string& msg, int code = 2) {
  std::fprintf(stderr, "gpugate log %s: %s\n", cmd, msg.c_str());
  return code;
}

Result<std::vector<tlog::VerifierKey>> load_keys(const std::vector<std::string>& paths) {
  std::vector<tlog::VerifierKey> keys;
  for (const auto& p : paths) {
    auto k = tlog::load_verifier_key(p);
    if (!k) return k.error();
    keys.push_back(*k);
  }
  return keys;
}

bool write_out(const std::string& path, const std::string& text) {
  if (path.empty() || path == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return true;
  }
  std::ofstream o(path, std::ios::binary | std::ios::trunc);
  o << text;
  return static_cast<bool>(o);
}

// A progress line on stderr for the long reads, redrawn at most ten times a
// second. Only on a terminal unless --progress: pipes and logs stay clean.
ProgressFn progress_line(const char* what, const LogArgs& a) {
  bool tty = isatty(STDERR_FILENO) == 1;
  if (a.no_progress || (!a.progress && !tty)) return {};
  auto last = std::make_shared<std::chrono::steady_clock::time_point>();
  return [=](const Progress& p) {
    auto now = std::chrono::steady_clock::now();
    if (!p.done && now - *last < std::chrono::milliseconds(100)) return;
    *last = now;
    // On a terminal the line is redrawn in place and erased at the end.
    if (tty && p.done) {
      std::fputs("\r\033[K", stderr);
      return;
    }
    std::fprintf(stderr, "%sgpugate log %s: %llu records, %.1f of %.1f MiB (%u%%)%s", tty ? "\r\033[K" : "", what,
                 static_cast<unsigned long long>(p.records), static_cast<double>(p.bytes) / (1 << 20),
                 static_cast<double>(p.total_bytes) / (1 << 20),
                 p.total_bytes ? static_cast<unsigned>(p.bytes * 100 / p.total_bytes) : 100u, tty ? "" : "\n");
  };
}

void add_progress(CLI::App* c, LogArgs& a) {
  auto* on = c->add_flag("--progress", a.progress, "Show progress on stderr even when it is not a terminal");
  c->add_flag("--no-progress", a.no_progress, "Never show progress (default: only when stderr is a terminal)")
      ->excludes(on);
}

int run_verify(const LogArgs& a) {
  VerifyOptions o;
  o.progress = progress_line("verify", a);
  auto keys = load_keys(a.keys);
  if (!keys) return fail("verify", keys.error().message);
  o.keys = *keys;
  if (!a.keys.empty()) o.key_source = "--key " + a.keys.front();
  for (const auto& c : a.checkpoints) {
    auto cp = tlog::load_signed_checkpoint(c);
    if (!cp) return fail("verify", cp.error().message);
    o.external.push_back({c, std::move(*cp)});
  }
  o.local_checkpoint = !a.no_local;
  auto r = verify_ledger(a.dir, o);
  if (!r) return fail("verify", r.error().message);
  if (a.json)
    std::printf("%s\n", r->json().dump(2).c_str());
  else
    std::printf("%s", r->text().c_str());
  return r->exit_code;
}

int run_checkpoint(const LogArgs& a) {
  auto latest = latest_checkpoint(a.dir);
  if (!latest) return fail("checkpoint", latest.error().message);
  if (a.from.empty()) return write_out(a.out, latest->note) ? 0 : fail("checkpoint", "cannot write " + a.out);
  // The body of a C2SP tlog-witness add-checkpoint request.
  auto old = tlog::load_signed_checkpoint(a.from);
  if (!old) return fail("checkpoint", old.error().message);
  if (old->body.size > latest->size)
    return fail("checkpoint",
                fmt::format("--from {} signs {} records, more than the latest checkpoint ({}): the "
                            "ledger lost records; run gpugate log verify --checkpoint {}",
                            a.from, old->body.size, latest->size, a.from),
                1);
  auto proof = consistency_proof(a.dir, old->body.size, latest->size);
  if (!proof) return fail("checkpoint", proof.error().message);
  // Check it before handing it out: the old checkpoint must be a prefix.
  merkle::Hasher h;
  auto newer = tlog::parse_signed_checkpoint(latest->note, "latest");
  if (!newer) return fail("checkpoint", newer.error().message);
  auto ok = merkle::verify_consistency(h, old->body.size, latest->size, *proof, old->body.root, newer->body.root);
  if (!ok)
    return fail("checkpoint",
                fmt::format("the ledger is not consistent with {}: {}; run gpugate log verify --checkpoint {}", a.from,
                            ok.error().message, a.from),
                1);
  std::string body = fmt::format("old {}\n", old->body.size);
  for (const auto& x : *proof) body += merkle::to_base64(x) + "\n";
  body += "\n" + latest->note;
  return write_out(a.out, body) ? 0 : fail("checkpoint", "cannot write " + a.out);
}

int run_proof(const LogArgs& a) {
  std::optional<tlog::SignedCheckpoint> against;
  if (!a.checkpoints.empty()) {
    auto cp = tlog::load_signed_checkpoint(a.checkpoints.front());
    if (!cp) return fail("proof", cp.error().message);
    against = std::move(*cp);
  }
  auto p = make_inclusion_proof(a.dir, a.seq, against);
  if (!p) return fail("proof", p.error().message);
  if (!a.record_out.empty() && !write_out(a.record_out, p->record + "\n"))
    return fail("proof", "cannot write " + a.record_out);
  return write_out(a.out, p->text()) ? 0 : fail("proof", "cannot write " + a.out);
}

int run_verify_proof(const LogArgs& a) {
  auto text = ledger::read_regular_file(a.proof, 16 << 20, "proof", "pass a file written by 'gpugate log proof'");
  if (!text) return fail("verify-proof", text.error().message);
  auto p = parse_proof(*text, a.proof);
  if (!p) return fail("verify-proof", p.error().message);
  std::string record;
  if (a.record == "-") {
    record.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    auto r = ledger::read_regular_file(a.record, 16 << 20, "record",
                                       "pass the record file 'gpugate log proof --record-out' wrote, or - for stdin");
    if (!r) return fail("verify-proof", r.error().message);
    record = std::move(*r);
  }
  auto keys = load_keys(a.keys);
  if (!keys) return fail("verify-proof", keys.error().message);
  auto c = check_proof(*p, record, *keys);
  std::printf("%s\n", c.message.c_str());
  return c.exit_code;
}

}  // namespace

std::function<std::optional<int>()> add_log_command(CLI::App& app) {
  auto a = std::make_shared<LogArgs>();
  auto* log = app.add_subcommand(
      "log",
      "Verify, prove, query, export, replay and draw the ledger (a directory of JSONL segments with signed "
      "checkpoints; docs/ledger.md)");
  log->require_subcommand(1);
  auto ship_run = add_ship_command(*log);    // gpugate log ship (ship_cmd.cpp)
  auto prune_run = add_prune_command(*log);  // gpugate log prune (prune_cmd.cpp)

  auto* verify = log->add_subcommand(
      "verify",
      "Recompute every record's hash, the Merkle tree, every checkpoint's root and signature, and the order of\n"
      "records and segments; name the first bad place (segment:line, seq, what is wrong).\n\n"
      "Without --key the key of the ledger's first checkpoint is trusted (said so in the output): pass the host's\n"
      "log-key.pub, kept elsewhere, to rule out a ledger re-signed with another key. --checkpoint FILE (a\n"
      "checkpoint shipped off the host earlier) proves that nothing it signed was cut off or rewritten.\n\n"
      "Exit status: 0 intact; 1 tampered or damaged (the first bad place is printed); 2 bad arguments or\n"
      "unreadable input (no ledger there, a damaged key or checkpoint file); 3 intact but unsigned (no\n"
      "checkpoint in the ledger).");
  add_dir(verify, *a);
  verify->add_option("--key", a->keys, "The host's verifier key (log-key.pub in gpugated's --state-dir); repeatable");
  verify->add_option("--checkpoint", a->checkpoints, "A signed checkpoint kept elsewhere (repeatable)");
  verify->add_flag("--no-local-checkpoint", a->no_local, "Ignore DIR/checkpoint (the latest checkpoint's copy)");
  verify->add_flag("--json", a->json, "The report as JSON");
  add_progress(verify, *a);

  auto* checkpoint = log->add_subcommand(
      "checkpoint",
      "Print the latest signed checkpoint (C2SP tlog-checkpoint in a signed note), to ship off the host or to a\n"
      "witness. With --from OLD: the body of a C2SP tlog-witness add-checkpoint request (old size, consistency\n"
      "proof, checkpoint), checked before it is printed.\n\n"
      "Exit status: 0 success; 1 the ledger is not consistent with --from; 2 bad arguments or unreadable input.");
  add_dir(checkpoint, *a);
  checkpoint->add_option("--from", a->from, "An older checkpoint: print the witness request body from it");
  checkpoint->add_option("-o,--output", a->out, "Write to FILE instead of stdout");

  auto* proof = log->add_subcommand(
      "proof",
      "An inclusion proof (c2sp.org/tlog-proof@v1) of record SEQ in the latest checkpoint (or --checkpoint).\n"
      "It verifies offline with only the record's line: gpugate log verify-proof PROOF --record LINE --key PUB.\n\n"
      "Exit status: 0 success; 2 bad arguments, unreadable input, or SEQ not yet covered by a checkpoint.");
  proof->add_option("SEQ", a->seq, "The record's sequence number")->required();
  add_dir(proof, *a);
  proof->add_option("--checkpoint", a->checkpoints, "Prove against this signed checkpoint instead of the latest");
  proof->add_option("-o,--output", a->out, "Write the proof to FILE instead of stdout");
  proof->add_option("--record-out", a->record_out, "Also write the record's line to FILE");

  auto* verify_proof = log->add_subcommand(
      "verify-proof",
      "Check a proof offline: the record line hashes (RFC 6962) to the checkpoint's root, and the checkpoint is\n"
      "signed by --key.\n\n"
      "Exit status: 0 included and signed; 1 not included or a bad signature; 2 bad arguments or unreadable\n"
      "input; 3 included, but no --key to check the signature.");
  verify_proof->add_option("PROOF", a->proof, "A file written by gpugate log proof")->required();
  verify_proof->add_option("--record", a->record, "The record's line, byte for byte ('-': stdin)")->required();
  verify_proof->add_option("--key", a->keys, "The host's verifier key (log-key.pub); repeatable");

  auto* show = log->add_subcommand(
      "show", std::string("Records as a table (or byte for byte with --json), filtered.\n\n") + kExitFooter);
  add_dir(show, *a);
  add_filters(show, a->f);
  show->add_flag("--json", a->json, "Print the matching lines as they are in the ledger");
  show->add_option("-n,--limit", a->limit, "At most N records");

  auto* stats = log->add_subcommand(
      "stats", std::string("Counts by type, class, verdict, process and GPU; gaps, drops and daemon down time.\n\n") +
                   kExitFooter);
  add_dir(stats, *a);
  add_filters(stats, a->f);
  stats->add_flag("--json", a->json, "JSON output");

  auto* exp = log->add_subcommand(
      "export",
      std::string("Matching records as ECS JSON lines, CSV or Timesketch JSON lines in FILE (read-only), with\n"
                  "FILE.sha256 (sha256sum -c) and FILE.manifest.json (what, from which ledger, its latest\n"
                  "checkpoint, who, when). Every row carries its leaf hash for gpugate log proof.\n\n") +
          kExitFooter);
  add_dir(exp, *a);
  add_filters(exp, a->f);
  exp->add_option("--format", a->format, "ecs, csv or timesketch")->required();
  exp->add_option("-o,--output", a->out, "Output FILE")->required();
  add_progress(exp, *a);

  auto* replay = log->add_subcommand(
      "replay",
      std::string("Decide every recorded GPU command again under --policy with the gate's own verdict code\n"
                  "(rules, classes, mode; the recorded bytes decoded again by today's decoder) and report what\n"
                  "would have changed: counts by transition and class, and the records.\n\n") +
          kExitFooter);
  add_dir(replay, *a);
  add_filters(replay, a->f);
  replay->add_option("--policy", a->policy, "Policy file (TOML) to replay under")->required();
  replay->add_flag("--json", a->json, "JSON output, every changed record");
  replay->add_option("--limit", a->replay_limit, "Changed records listed in text output")->capture_default_str();
  replay->add_flag("--no-redecode", a->no_redecode, "Trust the recorded class instead of decoding the bytes again");

  auto* timeline = log->add_subcommand(
      "timeline",
      std::string("Draw GPUs as lanes over time, commands coloured by class, denials marked, lost records and\n"
                  "daemon down time shaded: FILE.svg, or FILE.html with a legend and a summary (no script).\n\n") +
          kExitFooter);
  add_dir(timeline, *a);
  add_filters(timeline, a->f);
  timeline->add_option("-o,--output", a->out, "FILE.svg or FILE.html")->required();

  return [=]() -> std::optional<int> {
    if (!*log) return std::nullopt;
    if (auto rc = ship_run()) return *rc;
    if (auto rc = prune_run()) return *rc;
    if (*verify) return run_verify(*a);
    if (*checkpoint) return run_checkpoint(*a);
    if (*proof) return run_proof(*a);
    if (*verify_proof) return run_verify_proof(*a);
    auto f = make_filter(a->f);
    const char* name = *show ? "show" : *stats ? "stats" : *exp ? "export" : *replay ? "replay" : "timeline";
    if (!f) return fail(name, f.error().message);
    if (*show) {
      auto n = ledger::show(a->dir, *f, a->json, a->limit, std::cout);
      std::cout.flush();
      return n ? 0 : fail(name, n.error().message);
    }
    if (*stats) {
      auto s = ledger::stats(a->dir, *f);
      if (!s) return fail(name, s.error().message);
      std::printf("%s", a->json ? (s->dump(2) + "\n").c_str() : stats_text(*s).c_str());
      return 0;
    }
    if (*exp) {
      std::vector<std::string> argv = {"gpugate", "log", "export", a->dir, "--format", a->format, "-o", a->out};
      auto r = export_records(a->dir, *f, a->format, a->out, argv, progress_line("export", *a));
      if (!r) return fail(name, r.error().message);
      std::printf("%llu records -> %s\nsha256 %s\nmanifest %s\n", static_cast<unsigned long long>(r->records),
                  a->out.c_str(), r->sha256.c_str(), r->manifest_path.c_str());
      return 0;
    }
    if (*replay) {
      auto p = load_policy(a->policy);
      if (!p) return fail(name, p.error().message);
      ReplayOptions ro;
      ro.redecode = !a->no_redecode;
      auto r = ledger::replay(a->dir, *f, *p, ro);
      if (!r) return fail(name, r.error().message);
      std::printf("%s", a->json ? (r->dump(2) + "\n").c_str() : replay_text(*r, a->replay_limit).c_str());
      return 0;
    }
    bool html = a->out.ends_with(".html") || a->out.ends_with(".htm");
    if (!html && !a->out.ends_with(".svg"))
      return fail(name, fmt::format("-o {}: name the output FILE.svg or FILE.html", a->out));
    auto n = ledger::timeline(a->dir, *f, a->out, html);
    if (!n) return fail(name, n.error().message);
    std::printf("%llu commands drawn -> %s\n", static_cast<unsigned long long>(*n), a->out.c_str());
    return 0;
  };
}

}  // namespace gpugate::cli
