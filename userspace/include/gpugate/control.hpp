// The daemon's control socket: one JSON request per connection (one line),
// one JSON answer. Only root, or members of a configured group, get in (the
// peer's credentials are checked by the kernel, SO_PEERCRED).
//
// The server never blocks: it accepts, reads and writes only what is ready,
// keeps each connection's state, and is driven from the daemon's main loop
// (which also drains the kernel's ring buffer): poll fd() for readability,
// then call serve(). A connection has a deadline (2 s by default) to send
// its request and take its answer, a size cap (1 MiB), and at most
// max_connections are open at once; beyond that a client is answered "busy"
// and closed. Every such refusal is reported to the caller, to be recorded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpugate/result.hpp"
#include "gpugate/unique_fd.hpp"

namespace gpugate {

struct ControlPeer {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

struct ControlServerOptions {
  std::optional<gid_t> group;                // besides root, members of this group may connect
  size_t max_connections = 64;               // open at once; more are answered "busy"
  size_t max_request_bytes = 1 << 20;        // a request line longer than this is refused
  std::chrono::milliseconds deadline{2000};  // to send the request, and again to take the answer
  size_t max_requests_per_serve = 16;        // complete requests handed out by one serve()
  size_t max_accepts_per_serve = 64;         // connections accepted by one serve()
  int backlog = 256;                         // listen(2) backlog
};

// A complete request line from an allowed peer, waiting for respond().
struct ControlRequest {
  uint64_t id = 0;
  ControlPeer peer;
  std::string line;  // without its newline
};

// A connection the server ended without a request for the handler: not
// allowed, too many connections, too slow, too large, closed early.
struct ControlRefusal {
  ControlPeer peer;
  std::string reason;
};

struct ControlBatch {
  std::vector<ControlRequest> requests;
  std::vector<ControlRefusal> refusals;
};

class ControlServer {
 public:
  using Clock = std::chrono::steady_clock;

  // Listens on path (mode 0660, group = options.group if given). A stale
  // socket file is replaced; a live daemon's is not.
  static Result<ControlServer> listen(const std::string& path, ControlServerOptions options = {});
  ControlServer(ControlServer&&) noexcept = default;
  ControlServer& operator=(ControlServer&&) noexcept = default;
  ~ControlServer();

  // One fd for the caller's poll: readable whenever serve() has work (an
  // epoll instance over the listening socket and every connection).
  [[nodiscard]] int fd() const { return epoll_.get(); }
  [[nodiscard]] const std::string& path() const { return path_; }

  // Accepts, reads and writes what is ready, and ends connections past
  // their deadline; never blocks. Returns the complete requests (answer
  // each with respond()) and the refusals made, for the record. now is the
  // caller's clock reading (injected, so tests need not wait).
  ControlBatch serve(Clock::time_point now);
  // Queues the answer (one JSON text, without newline) for request id and
  // writes what the socket takes now; the rest goes out in later serve()s.
  void respond(uint64_t id, std::string answer, Clock::time_point now);
  // The earliest deadline of an open connection, for the caller's poll timeout.
  [[nodiscard]] std::optional<Clock::time_point> next_deadline() const;
  [[nodiscard]] size_t connections() const { return conns_.size(); }

  // Whether a peer may use the socket: uid 0, or the group among its groups.
  [[nodiscard]] bool allowed(const ControlPeer& peer) const;

 private:
  enum class State { kReading, kHandling, kWriting };
  struct Conn {
    UniqueFd fd;
    ControlPeer peer;
    State state = State::kReading;
    std::string in;
    std::string out;
    size_t out_off = 0;
    Clock::time_point deadline;
  };
  ControlServer(UniqueFd listen_fd, UniqueFd epoll_fd, std::string path, ControlServerOptions options)
      : listen_(std::move(listen_fd)), epoll_(std::move(epoll_fd)), path_(std::move(path)), options_(options) {}
  void accept_ready(Clock::time_point now, ControlBatch& batch);
  // Reads what is there; true when the connection is still open.
  bool read_ready(uint64_t id, Conn& c, ControlBatch& batch);
  void write_ready(uint64_t id, Conn& c);
  void finish_request(uint64_t id, Conn& c, std::string line, ControlBatch& batch);
  void refuse(uint64_t id, Conn& c, const std::string& answer_error, std::string reason, ControlBatch& batch);
  void close_conn(uint64_t id);
  void watch(uint64_t id, int fd, uint32_t events, bool add);

  UniqueFd listen_;
  UniqueFd epoll_;
  std::string path_;
  ControlServerOptions options_;
  std::unordered_map<uint64_t, Conn> conns_;
  uint64_t next_id_ = 1;                                  // 0 is the listening socket
  std::optional<Clock::time_point> accept_paused_until_;  // out of fds: accept again then
};

// An error answer, as the server and the handler write them.
std::string control_error_answer(const std::string& why);

// Client side: sends request, returns the daemon's answer. Errors name the
// socket and the fix (is gpugated running? are you root or in its group?).
Result<nlohmann::json> control_call(const std::string& path, const nlohmann::json& request, int timeout_ms = 10000);

}  // namespace gpugate
