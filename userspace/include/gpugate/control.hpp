// The daemon's control socket: one JSON request per connection, one JSON
// answer. Only root, or members of a configured group, get in (the peer's
// credentials are checked by the kernel, SO_PEERCRED).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "gpugate/result.hpp"
#include "gpugate/unique_fd.hpp"

namespace gpugate {

struct ControlPeer {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Its implicit members move a nlohmann::json, which does not throw; clang-tidy 14 cannot tell.
struct ControlCall {  // NOLINT(bugprone-exception-escape)
  UniqueFd conn;
  ControlPeer peer;
  nlohmann::json request;  // an object with "op"
};

class ControlServer {
 public:
  // Listens on path (mode 0660, group = allowed_group if given). A stale
  // socket file is replaced; a live daemon's is not.
  static Result<ControlServer> listen(const std::string& path, std::optional<gid_t> allowed_group);
  ControlServer(ControlServer&&) noexcept = default;
  ControlServer& operator=(ControlServer&&) noexcept = default;
  ~ControlServer();

  [[nodiscard]] int fd() const { return listen_.get(); }
  [[nodiscard]] const std::string& path() const { return path_; }

  // Accepts one waiting connection and reads its request (200 ms, 1 MiB at
  // most). A peer that is not allowed is answered with an error here and
  // reported as such (error.code EACCES), so the caller can record it.
  Result<ControlCall> accept_one();
  static void reply(ControlCall& call, const nlohmann::ordered_json& answer);

  // Whether a peer may use the socket: uid 0, or allowed_group among its groups.
  [[nodiscard]] bool allowed(const ControlPeer& peer) const;

 private:
  ControlServer(UniqueFd fd, std::string path, std::optional<gid_t> group)
      : listen_(std::move(fd)), path_(std::move(path)), group_(group) {}
  UniqueFd listen_;
  std::string path_;
  std::optional<gid_t> group_;
};

// Client side: sends request, returns the daemon's answer. Errors name the
// socket and the fix (is gpugated running? are you root or in its group?).
Result<nlohmann::json> control_call(const std::string& path, const nlohmann::json& request, int timeout_ms = 10000);

}  // namespace gpugate
