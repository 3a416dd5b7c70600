#include "gpugate/control.hpp"

#include <poll.h>
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

constexpr size_t kMaxRequestBytes = 1 << 20;

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
    if (buf.size() > kMaxRequestBytes) return make_error("message larger than 1 MiB", EMSGSIZE);
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

Result<ControlServer> ControlServer::listen(const std::string& path, std::optional<gid_t> allowed_group) {
  auto addr = socket_address(path);
  if (!addr) return addr.error();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return make_error(fmt::format("control socket: {}", std::strerror(errno)), errno);
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
  if (allowed_group && ::chown(path.c_str(), 0, *allowed_group) != 0)
    return make_error(fmt::format("cannot give {} to group {}: {}", path, *allowed_group, std::strerror(errno)), errno);
  if (::listen(fd.get(), 16) != 0)
    return make_error(fmt::format("cannot listen on {}: {}", path, std::strerror(errno)), errno);
  return ControlServer(std::move(fd), path, allowed_group);
}

ControlServer::~ControlServer() {
  if (listen_) ::unlink(path_.c_str());
}

bool ControlServer::allowed(const ControlPeer& peer) const {
  if (peer.uid == 0) return true;
  return group_ && (peer.gid == *group_ || in_group(peer.pid, *group_));
}

Result<ControlCall> ControlServer::accept_one() {
  ControlCall call;
  call.conn.reset(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!call.conn) return make_error(fmt::format("accept: {}", std::strerror(errno)), errno);
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(call.conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return make_error(fmt::format("SO_PEERCRED: {}", std::strerror(errno)), errno);
  call.peer = {cred.pid, cred.uid, cred.gid};
  if (!allowed(call.peer)) {
    reply(call, {{"ok", false},
                 {"error",
                  "permission denied: the control socket is for root and the group gpugated was given "
                  "(--control-group)"}});
    return make_error(fmt::format("uid {} (pid {}) is not allowed on the control socket", cred.uid, cred.pid), EACCES);
  }
  // Short: the daemon reads the ring in the same loop, and a client that
  // connects but does not write must not stall it.
  auto line = read_line(call.conn.get(), 200);
  if (!line) {
    reply(call, {{"ok", false}, {"error", "no request read: " + line.error().message}});
    return make_error("control request not read: " + line.error().message, EPROTO);
  }
  call.request = nlohmann::json::parse(*line, nullptr, false);
  if (call.request.is_discarded() || !call.request.is_object() || !call.request.contains("op") ||
      !call.request["op"].is_string()) {
    reply(call, {{"ok", false}, {"error", "a request is one JSON object with a string \"op\""}});
    return make_error("malformed control request", EPROTO);
  }
  return call;
}

void ControlServer::reply(ControlCall& call, const nlohmann::ordered_json& answer) {
  (void)write_all(call.conn.get(), answer.dump() + "\n");
  call.conn.reset();
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
  if (!write_all(fd.get(), request.dump() + "\n"))
    return make_error(fmt::format("cannot send to {}: {}", path, std::strerror(errno)), errno);
  auto line = read_line(fd.get(), timeout_ms);
  if (!line) return make_error(fmt::format("no answer from gpugated at {}: {}", path, line.error().message));
  auto j = nlohmann::json::parse(*line, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return make_error(fmt::format("gpugated at {} answered something that is not a JSON object", path));
  return j;
}

}  // namespace gpugate
