#include "gpugate/control.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace gpugate {
namespace {

constexpr size_t kMaxAnswerBytes = 16 << 20;  // what a client reads at most

Result<sockaddr_un> socket_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path))
    return make_error(fmt::format("control socket path {:?} is empty or longer than {} bytes; choose a shorter one",
                                  path, sizeof(addr.sun_path) - 1));
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  return addr;
}

// Reads until a newline or EOF, within the deadline.
Result<std::string> read_line(int fd, int timeout_ms) {
  std::string buf;
  char chunk[4096];
  while (buf.find('\n') == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r == 0) return make_error("timed out waiting for the other end", ETIMEDOUT);
    if (r < 0) {
      if (errno == EINTR) continue;
      return make_error(std::strerror(errno), errno);
    }
    ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(std::strerror(errno), errno);
    }
    if (n == 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    if (buf.size() > kMaxAnswerBytes) return make_error("answer larger than 16 MiB", EMSGSIZE);
  }
  return buf;
}

bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// One try at sending a short message; a client that does not take it loses it.
void send_now(int fd, const std::string& s) { (void)::send(fd, s.data(), s.size(), MSG_NOSIGNAL | MSG_DONTWAIT); }

// Supplementary groups of a process, from /proc (SO_PEERCRED has only the primary one).
bool in_group(pid_t pid, gid_t gid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream ss(line.substr(7));
    for (unsigned long g; ss >> g;)
      if (g == gid) return true;
  }
  return false;
}

}  // namespace

Result<ControlServer> ControlServer::listen(const std::string& path, ControlServerOptions options) {
  auto addr = socket_address(path);
  if (!addr) return addr.error();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return make_error(fmt::format("control socket: {}", std::strerror(errno)), errno);
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return make_error(fmt::format("control socket: epoll_create1: {}", std::strerror(errno)), errno);
  // A socket file nobody answers on is stale (a daemon that died); a live one is not ours to take.
  if (auto probe = control_call(path, {{"op", "ping"}}, 500); probe.ok())
    return make_error(fmt::format("control socket {}: another gpugated answers there; stop it first", path), EBUSY);
  ::unlink(path.c_str());
  mode_t old = ::umask(0117);
  int r = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
  ::umask(old);
  if (r != 0)
    return make_error(fmt::format("cannot bind the control socket {}: {}; does its directory exist and is it "
                                  "writable by root?",
                                  path, std::strerror(errno)),
                      errno);
  if (options.group && ::chown(path.c_str(), static_cast<uid_t>(-1), *options.group) != 0)
    return make_error(fmt::format("cannot give {} to group {}: {}", path, *options.group, std::strerror(errno)), errno);
  if (::listen(fd.get(), options.backlog) != 0)
    return make_error(fmt::format("cannot listen on {}: {}", path, std::strerror(errno)), errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0)
    return make_error(fmt::format("control socket {}: epoll_ctl: {}", path, std::strerror(errno)), errno);
  return ControlServer(std::move(fd), std::move(ep), path, options);
}

ControlServer::~ControlServer() {
  if (listen_) ::unlink(path_.c_str());
}

bool ControlServer::allowed(const ControlPeer& peer) const {
  if (peer.uid == 0) return true;
  return options_.group && (peer.gid == *options_.group || in_group(peer.pid, *options_.group));
}

std::string control_error_answer(const std::string& why) {
  return nlohmann::ordered_json{{"ok", false}, {"error", why}}.dump(-1, ' ', false,
                                                                    nlohmann::json::error_handler_t::replace);
}

void ControlServer::watch(uint64_t id, int fd, uint32_t events, bool add) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  (void)::epoll_ctl(epoll_.get(), add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
}

void ControlServer::close_conn(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
  conns_.erase(it);  // closes the fd
}

void ControlServer::refuse(uint64_t id, Conn& c, const std::string& answer_error, std::string reason,
                           ControlBatch& batch) {
  send_now(c.fd.get(), control_error_answer(answer_error) + "\n");
  batch.refusals.push_back({c.peer, std::move(reason)});
  close_conn(id);
}

void ControlServer::accept_ready(Clock::time_point now, ControlBatch& batch) {
  for (size_t i = 0; i < options_.max_accepts_per_serve; i++) {
    UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // The connection stays queued; stop watching the socket for a moment
        // rather than spin on it.
        batch.refusals.push_back(
            {{},
             fmt::format("cannot accept a connection: {}; connections wait in the backlog for 100 ms",
                         std::strerror(errno))});
        watch(0, listen_.get(), 0, false);
        accept_paused_until_ = now + std::chrono::milliseconds(100);
      }
      return;  // EAGAIN: nothing more waiting
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      batch.refusals.push_back({{}, fmt::format("SO_PEERCRED: {}", std::strerror(errno))});
      continue;
    }
    ControlPeer peer{cred.pid, cred.uid, cred.gid};
    if (!allowed(peer)) {
      send_now(fd.get(),
               control_error_answer("permission denied: the control socket is for root and the group gpugated was "
                                    "given (--control-group)") +
                   "\n");
      batch.refusals.push_back(
          {peer, fmt::format("uid {} (pid {}) is not allowed on the control socket", cred.uid, cred.pid)});
      continue;
    }
    if (conns_.size() >= options_.max_connections) {
      send_now(fd.get(), control_error_answer(fmt::format("busy: {} connections are open, the most gpugated serves "
                                                          "at once; try again in a moment",
                                                          conns_.size())) +
                             "\n");
      batch.refusals.push_back(
          {peer, fmt::format("too many connections: {} open, the limit; answered busy", conns_.size())});
      continue;
    }
    uint64_t id = next_id_++;
    watch(id, fd.get(), EPOLLIN, true);
    Conn c;
    c.fd = std::move(fd);
    c.peer = peer;
    c.deadline = now + options_.deadline;
    conns_.emplace(id, std::move(c));
  }
}

void ControlServer::finish_request(uint64_t id, Conn& c, std::string line, ControlBatch& batch) {
  c.state = State::kHandling;
  std::string().swap(c.in);  // the buffer's memory goes back now
  watch(id, c.fd.get(), 0, false);
  batch.requests.push_back({id, c.peer, std::move(line)});
}

bool ControlServer::read_ready(uint64_t id, Conn& c, ControlBatch& batch) {
  char chunk[65536];
  while (true) {
    ssize_t n = ::recv(c.fd.get(), chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n > 0) {
      size_t scan_from = c.in.size();
      c.in.append(chunk, static_cast<size_t>(n));
      size_t nl = c.in.find('\n', scan_from);
      if (nl != std::string::npos && nl <= options_.max_request_bytes) {
        c.in.resize(nl);
        finish_request(id, c, std::move(c.in), batch);
        return true;
      }
      if (c.in.size() > options_.max_request_bytes) {
        refuse(id, c,
               fmt::format("request larger than {} bytes; a request is one JSON object of at most that size, then a "
                           "newline",
                           options_.max_request_bytes),
               fmt::format("request larger than {} bytes", options_.max_request_bytes), batch);
        return false;
      }
      continue;
    }
    if (n == 0) {  // end of file: a request without its newline counts as complete
      if (c.in.empty()) {
        batch.refusals.push_back({c.peer, "closed the connection without sending a request"});
        close_conn(id);
        return false;
      }
      finish_request(id, c, std::move(c.in), batch);
      return true;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    batch.refusals.push_back({c.peer, fmt::format("reading the request failed: {}", std::strerror(errno))});
    close_conn(id);
    return false;
  }
}

void ControlServer::write_ready(uint64_t id, Conn& c) {
  while (c.out_off < c.out.size()) {
    ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.out_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    close_conn(id);  // the peer went away: nobody to answer
    return;
  }
  close_conn(id);
}

ControlBatch ControlServer::serve(Clock::time_point now) {
  ControlBatch batch;
  if (accept_paused_until_ && now >= *accept_paused_until_) {
    accept_paused_until_.reset();
    watch(0, listen_.get(), EPOLLIN, false);
  }
  epoll_event events[64];
  int n = ::epoll_wait(epoll_.get(), events, 64, 0);
  for (int i = 0; i < n; i++) {
    uint64_t id = events[i].data.u64;
    if (id == 0) {
      accept_ready(now, batch);
      continue;
    }
    auto it = conns_.find(id);
    if (it == conns_.end()) continue;  // closed earlier in this call
    Conn& c = it->second;
    if (c.state == State::kReading) {
      // Bounded work per call: what is left stays ready for the next one.
      if (batch.requests.size() >= options_.max_requests_per_serve) continue;
      (void)read_ready(id, c, batch);
    } else if (c.state == State::kWriting) {
      write_ready(id, c);
    }
  }
  // Deadlines: a client that is silent, sends half a request or does not
  // read its answer loses its connection.
  std::vector<uint64_t> late;
  for (const auto& [id, c] : conns_)
    if (now >= c.deadline && c.state != State::kHandling) late.push_back(id);
  for (uint64_t id : late) {
    Conn& c = conns_.at(id);
    auto ms = options_.deadline.count();
    if (c.state == State::kReading) {
      std::string got =
          c.in.empty() ? std::string("nothing") : fmt::format("{} bytes without the closing newline", c.in.size());
      refuse(id, c, fmt::format("no complete request within {} ms; send one JSON object and a newline at once", ms),
             fmt::format("timed out after {} ms waiting for the request ({} received)", ms, got), batch);
    } else {
      batch.refusals.push_back(
          {c.peer, fmt::format("timed out after {} ms: the client did not take its answer ({} of {} bytes sent)", ms,
                               c.out_off, c.out.size())});
      close_conn(id);
    }
  }
  return batch;
}

void ControlServer::respond(uint64_t id, std::string answer, Clock::time_point now) {
  auto it = conns_.find(id);
  if (it == conns_.end() || it->second.state != State::kHandling) return;
  Conn& c = it->second;
  c.out = std::move(answer);
  c.out.push_back('\n');
  c.out_off = 0;
  c.state = State::kWriting;
  c.deadline = now + options_.deadline;
  write_ready(id, c);
  it = conns_.find(id);
  if (it != conns_.end()) watch(id, it->second.fd.get(), EPOLLOUT, false);
}

std::optional<ControlServer::Clock::time_point> ControlServer::next_deadline() const {
  std::optional<Clock::time_point> out;
  for (const auto& [id, c] : conns_)
    if (c.state != State::kHandling && (!out || c.deadline < *out)) out = c.deadline;
  if (accept_paused_until_ && (!out || *accept_paused_until_ < *out)) out = accept_paused_until_;
  return out;
}

Result<nlohmann::json> control_call(const std::string& path, const nlohmann::json& request, int timeout_ms) {
  auto addr = socket_address(path);
  if (!addr) return addr.error();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return make_error(fmt::format("socket: {}", std::strerror(errno)), errno);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0)
    return make_error(fmt::format("cannot reach gpugated at {}: {}; is the daemon running (gpugate status), and are "
                                  "you root or in its --control-group?",
                                  path, std::strerror(errno)),
                      errno);
  if (!write_all(fd.get(), request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"))
    return make_error(fmt::format("cannot send to {}: {}", path, std::strerror(errno)), errno);
  auto line = read_line(fd.get(), timeout_ms);
  if (!line) return make_error(fmt::format("no answer from gpugated at {}: {}", path, line.error().message));
  auto j = nlohmann::json::parse(*line, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return make_error(fmt::format("gpugated at {} answered something that is not a JSON object", path));
  return j;
}

}  // namespace gpugate
