// The control socket's server on its own: it never blocks, and a silent,
// half-sending, oversized, greedy or non-reading client only loses its own
// connection. Time is injected (serve(now)), so nothing here waits for a
// deadline or depends on the machine's speed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "gpugate/control.hpp"
#include "gpugate/unique_fd.hpp"
#include "tempdir.hpp"

using namespace gpugate;
using namespace std::chrono_literals;
using Clock = ControlServer::Clock;

namespace {

UniqueFd connect_to(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
  return fd;
}

void send_text(const UniqueFd& fd, const std::string& s) {
  ASSERT_EQ(::send(fd.get(), s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
}

// What the server has sent so far, without waiting; eof says whether it closed.
std::string received(const UniqueFd& fd, bool* eof = nullptr) {
  std::string out;
  char buf[4096];
  if (eof) *eof = false;
  while (true) {
    ssize_t n = ::recv(fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 && eof) *eof = true;
    if (n < 0 && errno != EAGAIN && eof) *eof = true;  // a reset ends it too
    return out;
  }
}

class Server : public ::testing::Test {
 protected:
  void SetUp() override { open({}); }
  void open(ControlServerOptions options) {
    server.reset();
    options.group = ::getegid();  // this test's own group may connect, root or not
    std::string error;
    server = listen_at(path, options, error);
    ASSERT_TRUE(server) << error;
  }
  static std::optional<ControlServer> listen_at(const std::string& at, const ControlServerOptions& options,
                                                std::string& error) {
    auto s = ControlServer::listen(at, options);
    if (s) return std::move(*s);
    error = s.error().message;
    return std::nullopt;
  }
  // Serves until n requests came (bounded by turns, not by time).
  ControlBatch serve_until(size_t n, Clock::time_point now, int turns = 100) {
    ControlBatch all;
    for (int i = 0; i < turns && all.requests.size() < n; i++) {
      auto b = server->serve(now);
      for (auto& r : b.requests) all.requests.push_back(std::move(r));
      for (auto& r : b.refusals) all.refusals.push_back(std::move(r));
    }
    return all;
  }

  gpugate::test::TempDir dir;
  std::string path = (dir.path / "ctl.sock").string();
  std::optional<ControlServer> server;
  Clock::time_point t0 = Clock::now();
};

}  // namespace

TEST_F(Server, ARequestLineIsHandedOutAndAnswered) {
  auto client = connect_to(path);
  send_text(client, "{\"op\":\"ping\"}\n");
  auto batch = serve_until(1, t0);
  ASSERT_EQ(batch.requests.size(), 1u);
  EXPECT_EQ(batch.requests[0].line, "{\"op\":\"ping\"}");
  EXPECT_EQ(batch.requests[0].peer.pid, ::getpid());
  EXPECT_EQ(batch.requests[0].peer.uid, ::geteuid());
  server->respond(batch.requests[0].id, "{\"ok\":true}", t0);
  bool eof = false;
  EXPECT_EQ(received(client, &eof), "{\"ok\":true}\n");
  EXPECT_TRUE(eof) << "one request per connection";
  EXPECT_EQ(server->connections(), 0u);
}

TEST_F(Server, ARequestEndedByEndOfFileCounts) {
  auto client = connect_to(path);
  send_text(client, "{\"op\":\"ping\"}");
  ::shutdown(client.get(), SHUT_WR);
  auto batch = serve_until(1, t0);
  ASSERT_EQ(batch.requests.size(), 1u);
  EXPECT_EQ(batch.requests[0].line, "{\"op\":\"ping\"}");
}

TEST_F(Server, ASilentClientLosesOnlyItsOwnConnection) {
  auto silent = connect_to(path);
  (void)server->serve(t0);  // accepted; its deadline is t0 + 2 s
  auto other = connect_to(path);
  send_text(other, "{\"op\":\"nonce\"}\n");
  auto batch = serve_until(1, t0 + 1s);
  ASSERT_EQ(batch.requests.size(), 1u) << "the other client is served while the silent one waits";
  server->respond(batch.requests[0].id, "{\"ok\":true,\"nonce\":\"n\"}", t0 + 1s);
  EXPECT_EQ(received(other), "{\"ok\":true,\"nonce\":\"n\"}\n");
  EXPECT_TRUE(batch.refusals.empty());
  EXPECT_EQ(server->connections(), 1u);
  ASSERT_TRUE(server->next_deadline());
  EXPECT_EQ(*server->next_deadline(), t0 + 2s);

  auto late = server->serve(t0 + 2s);
  ASSERT_EQ(late.refusals.size(), 1u);
  EXPECT_NE(late.refusals[0].reason.find("timed out after 2000 ms waiting for the request (nothing received)"),
            std::string::npos)
      << late.refusals[0].reason;
  bool eof = false;
  auto answer = received(silent, &eof);
  EXPECT_NE(answer.find("no complete request within 2000 ms"), std::string::npos) << answer;
  EXPECT_TRUE(eof);
  EXPECT_EQ(server->connections(), 0u);
}

TEST_F(Server, AHalfSentRequestTimesOut) {
  auto client = connect_to(path);
  send_text(client, "{\"op\":\"pi");
  auto batch = serve_until(1, t0, 5);
  EXPECT_TRUE(batch.requests.empty());
  auto late = server->serve(t0 + 3s);
  ASSERT_EQ(late.refusals.size(), 1u);
  EXPECT_NE(late.refusals[0].reason.find("9 bytes without the closing newline"), std::string::npos)
      << late.refusals[0].reason;
}

TEST_F(Server, AnOversizedRequestIsRefused) {
  ControlServerOptions options;
  options.max_request_bytes = 1000;
  open(options);
  auto client = connect_to(path);
  send_text(client, std::string(1500, 'x'));
  auto batch = serve_until(1, t0, 5);
  EXPECT_TRUE(batch.requests.empty());
  ASSERT_EQ(batch.refusals.size(), 1u);
  EXPECT_EQ(batch.refusals[0].reason, "request larger than 1000 bytes");
  EXPECT_EQ(server->connections(), 0u);
  // One exactly at the limit is fine.
  auto fits = connect_to(path);
  send_text(fits, std::string(1000, 'y') + "\n");
  batch = serve_until(1, t0, 5);
  ASSERT_EQ(batch.requests.size(), 1u);
  EXPECT_EQ(batch.requests[0].line.size(), 1000u);
}

TEST_F(Server, BeyondTheConnectionCapClientsAreAnsweredBusy) {
  ControlServerOptions options;
  options.max_connections = 4;
  open(options);
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 10; i++) clients.push_back(connect_to(path));
  auto batch = serve_until(1, t0, 5);
  EXPECT_EQ(server->connections(), 4u);
  ASSERT_EQ(batch.refusals.size(), 6u);
  EXPECT_NE(batch.refusals[0].reason.find("too many connections: 4 open"), std::string::npos)
      << batch.refusals[0].reason;
  int busy = 0;
  for (auto& c : clients)
    if (received(c).find("busy: 4 connections are open") != std::string::npos) busy++;
  EXPECT_EQ(busy, 6);
}

TEST_F(Server, ManyConcurrentClientsAllGetAnAnswer) {
  constexpr int kClients = 300;
  std::vector<UniqueFd> clients;
  ControlBatch all;
  for (int i = 0; i < kClients; i++) {
    clients.push_back(connect_to(path));
    send_text(clients.back(), "{\"op\":\"ping\"}\n");
    if (i % 50 == 49) {  // the backlog is finite; the loop serves as they come
      auto b = server->serve(t0);
      for (auto& r : b.requests) server->respond(r.id, "{\"ok\":true}", t0);
      all.refusals.insert(all.refusals.end(), b.refusals.begin(), b.refusals.end());
    }
  }
  for (int turn = 0; turn < 100 && server->connections() > 0; turn++) {
    auto b = server->serve(t0);
    for (auto& r : b.requests) server->respond(r.id, "{\"ok\":true}", t0);
    all.refusals.insert(all.refusals.end(), b.refusals.begin(), b.refusals.end());
  }
  for (int turn = 0; turn < 20; turn++) {
    auto b = server->serve(t0);
    for (auto& r : b.requests) server->respond(r.id, "{\"ok\":true}", t0);
    all.refusals.insert(all.refusals.end(), b.refusals.begin(), b.refusals.end());
  }
  int ok = 0, busy = 0;
  for (auto& c : clients) {
    auto text = received(c);
    if (text == "{\"ok\":true}\n") ok++;
    if (text.find("busy") != std::string::npos) busy++;
  }
  EXPECT_EQ(ok + busy, kClients) << "every client heard something";
  EXPECT_GT(ok, 0);
  EXPECT_EQ(static_cast<size_t>(busy), all.refusals.size());
  EXPECT_EQ(server->connections(), 0u);
}

TEST_F(Server, AClientThatDoesNotReadItsAnswerIsDropped) {
  auto client = connect_to(path);
  send_text(client, "{\"op\":\"grants\"}\n");
  auto batch = serve_until(1, t0);
  ASSERT_EQ(batch.requests.size(), 1u);
  server->respond(batch.requests[0].id, std::string(8 << 20, 'g'), t0);  // more than a socket buffer holds
  EXPECT_EQ(server->connections(), 1u);
  EXPECT_TRUE(server->serve(t0 + 1s).refusals.empty());
  auto late = server->serve(t0 + 2s);
  ASSERT_EQ(late.refusals.size(), 1u);
  EXPECT_NE(late.refusals[0].reason.find("did not take its answer"), std::string::npos) << late.refusals[0].reason;
  EXPECT_EQ(server->connections(), 0u);
}

TEST_F(Server, AClientThatClosesAtOnceIsRecorded) {
  { auto client = connect_to(path); }
  auto batch = serve_until(1, t0, 5);
  ASSERT_EQ(batch.refusals.size(), 1u);
  EXPECT_EQ(batch.refusals[0].reason, "closed the connection without sending a request");
}

TEST_F(Server, TheSocketIsForItsGroupOnly) {
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, ::getegid());
  EXPECT_TRUE(server->allowed({1, 0, 12345}));
  EXPECT_TRUE(server->allowed({1, 12345, ::getegid()}));
  EXPECT_FALSE(server->allowed({1, 12345, ::getegid() + 1}));
}
