// `gpugate log ship`. Thin: arguments in, ship::ship(), output. See ship_cmd.hpp.
#include "ship_cmd.hpp"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include "gpugate/paths.hpp"
#include "gpugate/ship.hpp"

namespace gpugate::cli {

namespace {

struct ShipArgs {
  std::string dir = paths::kLedger;
  std::string to, state, host_id, witness;
  std::vector<std::string> keys;
  bool follow = false, json = false;
  uint64_t interval_ms = 1000, batch = 1000, max_backoff_ms = 60000;
};

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

int fail(const std::string& msg, int code) {
  std::fprintf(stderr, "gpugate log ship: %s\n", msg.c_str());
  return code;
}

int run_ship(const ShipArgs& a) {
  auto dest = ship::open_destination(a.to);
  if (!dest) return fail(dest.error().message, ship::kShipUsage);
  ship::ShipOptions o;
  o.ledger_dir = a.dir;
  o.state_path = a.state.empty() ? ship::default_state_path(a.to) : a.state;
  o.host_id = a.host_id;
  for (const auto& k : a.keys) {
    auto v = tlog::load_verifier_key(k);
    if (!v) return fail(v.error().message, ship::kShipUsage);
    o.keys.push_back(*v);
  }
  o.witness = a.witness;
  o.batch_records = a.batch;
  o.follow = a.follow;
  o.interval = std::chrono::milliseconds(a.interval_ms);
  o.max_backoff = std::chrono::milliseconds(std::max(a.max_backoff_ms, a.interval_ms));
  if (a.follow) {
    // Stop between batches: what was acknowledged is in the state file.
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    o.stop = [] { return g_stop.load(); };
    // Sleep in short steps so a signal ends a long backoff at once.
    o.sleep = [](std::chrono::milliseconds d) {
      for (auto left = d; left.count() > 0 && !g_stop; left -= std::chrono::milliseconds(100))
        std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(100)));
    };
  }
  std::string name = (*dest)->name();
  if (!a.json) {
    o.on_batch = [&](const ship::BatchReport& b) {
      std::string cps;
      for (auto s : b.checkpoints) cps += fmt::format("{}checkpoint {}", cps.empty() ? ", " : " ", s);
      std::printf("shipped seq %llu..%llu (%llu records, %llu bytes%s) to %s\n",
                  static_cast<unsigned long long>(b.first_seq),
                  static_cast<unsigned long long>(b.first_seq + b.count - 1), static_cast<unsigned long long>(b.count),
                  static_cast<unsigned long long>(b.bytes), cps.c_str(), name.c_str());
      std::fflush(stdout);
    };
  }
  o.on_retry = [](const std::string& m) { std::fprintf(stderr, "gpugate log ship: %s\n", m.c_str()); };
  auto r = ship::ship(**dest, o);
  if (!r) return fail(r.error().message, ship::kShipUsage);
  if (a.json) {
    std::printf("%s\n", r->json().dump().c_str());
  } else if (r->exit_code == ship::kShipOk) {
    std::printf("%s: up to date: %llu records shipped by this run, seq 0..%lld acknowledged in all%s\n", name.c_str(),
                static_cast<unsigned long long>(r->records), static_cast<long long>(r->next_seq) - 1,
                r->checkpoint_size ? fmt::format(", last checkpoint {}", r->checkpoint_size).c_str() : "");
    if (!a.witness.empty() && r->witness_size)
      std::printf("%s: checkpoint %llu cosigned%s\n", a.witness.c_str(),
                  static_cast<unsigned long long>(r->witness_size),
                  r->cosigned_path.empty() ? "" : fmt::format(", stored in {}", r->cosigned_path).c_str());
  }
  if (r->exit_code != ship::kShipOk) return fail(r->error, r->exit_code);
  return ship::kShipOk;
}

}  // namespace

std::function<std::optional<int>()> add_ship_command(CLI::App& log) {
  auto a = std::make_shared<ShipArgs>();
  auto* c = log.add_subcommand(
      "ship",
      "Send the ledger's records and signed checkpoints off the host and resume where it stopped: to a collector\n"
      "directory (dir:PATH: PATH/<host-id>/records.jsonl and checkpoints/<size>.checkpoint) or an HTTP(S)\n"
      "collector (POST URL/records as application/x-ndjson, URL/checkpoint as text/plain; docs/ledger.md).\n"
      "A state file keeps what the destination acknowledged; each start rehashes the shipped records and stops\n"
      "if one was changed since. Without --follow it ships what is there and exits. With --witness URL each shipped\n"
      "checkpoint is also sent to a C2SP tlog-witness and its cosigned note kept (checkpoints/<size>.cosigned\n"
      "at a dir: collector, else <state>.cosigned).\n\n"
      "Exit status: 0 shipped (or nothing new); 1 the ledger no longer matches what was shipped (or the collector\n"
      "disagrees); 2 bad arguments or unreadable input; 3 the destination is down or refused a batch (the state\n"
      "is unchanged: run again to resume).");
  c->add_option("DIR", a->dir, "Ledger directory (gpugated --ledger)")->capture_default_str();
  c->add_option("--to", a->to, "Destination: dir:PATH, http://HOST/PREFIX or https://HOST/PREFIX")->required();
  c->add_option("--state", a->state, "State file (default /var/lib/gpugate/ship-<hash of the destination>.state)");
  c->add_option("--host-id", a->host_id, "Host id at the collector (default: the ledger's host_id)");
  c->add_option("--key", a->keys, "Trust checkpoints signed by this verifier key only (log-key.pub); repeatable");
  c->add_option("--witness", a->witness,
                "After a checkpoint is shipped, have this C2SP tlog-witness cosign it (POST URL/add-checkpoint)");
  c->add_flag("--follow", a->follow, "Keep running: ship new records as they appear; retry a destination that is down");
  c->add_option("--interval-ms", a->interval_ms, "With --follow: poll the ledger this often")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{3600000}));
  c->add_option("--max-backoff-ms", a->max_backoff_ms, "With --follow: retry a failing destination at least this often")
      ->capture_default_str();
  c->add_option("--batch", a->batch, "Records per batch (a batch also ends after each checkpoint record)")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{1000000}));
  c->add_flag("--json", a->json, "One JSON summary on stdout instead of a line per batch");
  return [=]() -> std::optional<int> {
    if (!*c) return std::nullopt;
    return run_ship(*a);
  };
}

}  // namespace gpugate::cli
