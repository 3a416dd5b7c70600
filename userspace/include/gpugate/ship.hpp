// `gpugate log ship`: copies the ledger's records and signed checkpoints off
// the host, to a collector directory or an HTTP(S) collector, and resumes
// where it stopped. A state file says what the destination acknowledged (the
// next seq, the compact range of the shipped leaves, the last shipped
// checkpoint); every start rehashes the shipped prefix of the ledger against
// it, so a record changed after it left the host stops shipping with an
// error. docs/ledger.md ("Shipping the ledger off the host") has the protocol.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpugate/checkpoint.hpp"
#include "gpugate/merkle.hpp"
#include "gpugate/result.hpp"

namespace gpugate::ship {

// Exit codes of `gpugate log ship`.
enum ShipExit : int {
  kShipOk = 0,
  kShipMismatch = 1,     // the ledger (or the collector) no longer matches what was shipped
  kShipUsage = 2,        // bad arguments, unreadable ledger or state file
  kShipDestination = 3,  // the destination is down or refused a batch; state unchanged, rerun to resume
};

// A destination's error with code EAGAIN is transient (down, unreachable,
// 5xx, a failed write): --follow retries it with backoff. Any other code is
// a refusal that retrying cannot fix.
class Destination {
 public:
  virtual ~Destination() = default;
  [[nodiscard]] virtual std::string name() const = 0;
  // Called once before the first batch, and again after a failed send.
  virtual Result<void> begin(const std::string& host_id) = 0;
  // Records first_seq .. first_seq + lines.size() - 1 (lines without their
  // newline). Success means stored durably; records the destination already
  // holds are skipped there, never stored twice.
  virtual Result<void> send_records(uint64_t first_seq, std::span<const std::string> lines) = 0;
  // A signed checkpoint note of size records (sent after those records).
  virtual Result<void> send_checkpoint(uint64_t size, const std::string& note) = 0;
  // A checkpoint cosigned by a witness (--witness), stored durably beside the
  // shipped one (dir: checkpoints/<size>.cosigned): where it went; "": this
  // destination keeps none, the shipper keeps it locally (<state>.cosigned).
  // Called after begin().
  virtual Result<std::string> store_cosigned(uint64_t /*size*/, const std::string& /*note*/) { return std::string(); }
};

// "dir:PATH": PATH/<host-id>/records.jsonl and PATH/<host-id>/checkpoints/<size>.checkpoint.
// "http://..." or "https://...": POST URL/records and URL/checkpoint.
Result<std::unique_ptr<Destination>> open_destination(const std::string& spec);
std::unique_ptr<Destination> dir_destination(const std::string& path);
std::unique_ptr<Destination> http_destination(const std::string& url);

// The default state file for a destination: /var/lib/gpugate/ship-<16 hex of SHA-256(spec)>.state.
std::string default_state_path(const std::string& spec);

// What the destination acknowledged.
struct State {
  std::string destination;
  std::string host_id;
  uint64_t next_seq = 0;            // records 0 .. next_seq-1 acknowledged
  std::vector<merkle::Hash> range;  // compact range of those leaves
  merkle::Hash last_leaf{};         // leaf hash of record next_seq-1
  uint64_t checkpoint_size = 0;     // the last acknowledged checkpoint (0: none)
  merkle::Hash checkpoint_root{};
  std::string checkpoint_note;
  std::string key;            // verifier key of the shipped checkpoints
  std::string witness;        // --witness URL the witnessed size belongs to ("": none)
  uint64_t witness_size = 0;  // the last checkpoint size that witness cosigned (0: none)
  [[nodiscard]] nlohmann::ordered_json json() const;
};
// A missing file is a fresh state (next_seq 0); a damaged one is an error naming the fix.
Result<State> load_state(const std::string& path);
// Written to PATH.tmp, fsynced, renamed over PATH, the directory fsynced.
Result<void> save_state(const std::string& path, const State& s);

// The seq before which every record was acknowledged by each of these
// destinations: the least next_seq of their state files (0 for a state file
// not written yet). For gpugated --ledger-shipped, whose budget prunes only
// what this says. An error names a state file that cannot be read, that
// ships another host, or that claims more records than the ledger has.
Result<uint64_t> shipped_before(const std::vector<std::string>& state_paths, const std::string& host_id,
                                uint64_t ledger_next_seq);

// --witness URL (c2sp.org/tlog-witness): one POST URL/add-checkpoint. A
// failed connection is an error with code EAGAIN; any HTTP answer is a reply.
struct WitnessReply {
  long status = 0;
  std::string content_type;
  std::string body;
};
Result<WitnessReply> witness_add_checkpoint(const std::string& url, const std::string& body);
// The add-checkpoint request body: "old N\n", one base64 proof hash per line,
// a blank line, the signed checkpoint note.
std::string witness_request(uint64_t old_size, std::span<const merkle::Hash> proof, const std::string& note);

struct BatchReport {
  uint64_t first_seq = 0;
  uint64_t count = 0;
  uint64_t bytes = 0;
  std::vector<uint64_t> checkpoints;  // sizes of the checkpoints shipped with it
};

struct ShipOptions {
  std::string ledger_dir;
  std::string state_path;
  std::string host_id;                  // "": the ledger's (seq 0's host_id, or the checkpoint origin)
  std::vector<tlog::VerifierKey> keys;  // trusted for checkpoints; empty: the first checkpoint's key
  size_t batch_records = 1000;
  bool follow = false;
  std::chrono::milliseconds interval{1000};      // --follow: poll this often
  std::chrono::milliseconds max_backoff{60000};  // --follow: retry a failing destination at most this far apart
  // --witness URL: after a checkpoint is shipped, have this C2SP tlog-witness
  // cosign it (POST URL/add-checkpoint). "": no witness.
  std::string witness;
  // Hooks: sleeping (tests pass one that returns at once), when to stop in
  // --follow (signals), and progress.
  std::function<void(std::chrono::milliseconds)> sleep;
  std::function<bool()> stop;
  std::function<void(const BatchReport&)> on_batch;
  std::function<void(const std::string&)> on_retry;
};

struct ShipSummary {
  std::string destination;
  std::string state_path;
  std::string host_id;
  uint64_t records = 0;  // shipped by this run
  uint64_t checkpoints = 0;
  uint64_t batches = 0;
  uint64_t retries = 0;
  uint64_t next_seq = 0;  // acknowledged in all
  uint64_t checkpoint_size = 0;
  uint64_t witness_size = 0;  // --witness: the last size it cosigned
  std::string cosigned_path;  // --witness: where the last cosigned note was stored
  int exit_code = kShipOk;
  std::string error;  // what stopped it (exit_code != 0)
  [[nodiscard]] nlohmann::ordered_json json() const;
};

// Ships until the ledger's end (or, with follow, until stop() says so).
// Errors that prevent a start (no ledger, a damaged state file) are errors;
// everything else is in the summary, with what was shipped before it.
Result<ShipSummary> ship(Destination& dest, const ShipOptions& opt);

}  // namespace gpugate::ship
