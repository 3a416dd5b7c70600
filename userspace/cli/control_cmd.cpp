#include "control_cmd.hpp"

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "gpugate/control.hpp"
#include "gpugate/file.hpp"
#include "gpugate/paths.hpp"
#include "gpugate/request.hpp"
#include "gpugate/timefmt.hpp"

namespace gpugate::cli {
namespace {

constexpr const char* kCgroupRoot = "/sys/fs/cgroup";
constexpr long kCgroup2Magic = 0x63677270;

int fail(const std::string& what) {
  std::fprintf(stderr, "gpugate: %s\n", what.c_str());
  return 1;
}

// The daemon's answer, or the reason there is none; exit 3 when it is not running.
struct Answer {
  nlohmann::json body;
  int rc = 0;
};

Answer call(const std::string& socket, const nlohmann::json& request) {
  auto a = control_call(socket, request);
  if (!a) {
    std::fprintf(stderr, "gpugate: %s\n", a.error().message.c_str());
    return {{}, 3};
  }
  if (!a->value("ok", false)) {
    std::fprintf(stderr, "gpugate: gpugated refused: %s\n", a->value("error", std::string("(no reason)")).c_str());
    return {*a, 1};
  }
  return {*a, 0};
}

// {"op": "submit", "request": TEXT, "signatures": [...]} from the request's
// text and the signature files.
std::optional<nlohmann::json> submit_body_of(const std::string& text, const std::vector<std::string>& sig_files) {
  nlohmann::json body{{"op", "submit"}};
  body["request"] = text;
  body["signatures"] = nlohmann::json::array();
  for (const auto& f : sig_files) {
    auto sig = read_file(f, 64 * 1024);
    if (!sig) {
      std::fprintf(stderr, "gpugate: a signature: %s\n", sig.error().message.c_str());
      return std::nullopt;
    }
    body["signatures"].push_back({{"label", f}, {"armored", *sig}});
  }
  return body;
}

// The same, from the request file.
std::optional<nlohmann::json> submit_body(const std::string& request_file, const std::vector<std::string>& sig_files) {
  // The same bounds as gpugate request verify: the parser names an oversized request.
  auto text = read_file(request_file, auth::kMaxRequestBytes + 1);
  if (!text) {
    std::fprintf(stderr, "gpugate: the request: %s\n", text.error().message.c_str());
    return std::nullopt;
  }
  return submit_body_of(*text, sig_files);
}

// " scope cgroup=/gpugate-exec/... (id 1234)", or "" for any process.
std::string grant_scope_text(const nlohmann::json& g) {
  auto kind = g.contains("scope") && g["scope"].is_string() ? g["scope"].get<std::string>() : std::string("any");
  if (kind == "any") return "";
  uint64_t id = g.contains("scope_id") && g["scope_id"].is_number_unsigned() ? g["scope_id"].get<uint64_t>() : 0;
  if (g.contains("signed_scope") && g["signed_scope"].is_string())
    return fmt::format(" scope {} (id {})", g["signed_scope"].get<std::string>(), id);
  return fmt::format(" scope {} {}", kind, id);
}

std::string own_cgroup() {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  return "/";
}

Result<void> ensure_cgroup2() {
  struct statfs fs {};
  if (::statfs(kCgroupRoot, &fs) == 0 && fs.f_type == kCgroup2Magic) return {};
  if (::mount("cgroup2", kCgroupRoot, "cgroup2", 0, nullptr) != 0)
    return make_error(
        fmt::format("{} is not a cgroup v2 mount and mounting one failed ({}); gpugate exec scopes "
                    "grants by cgroup v2: mount -t cgroup2 none {}",
                    kCgroupRoot, std::strerror(errno), kCgroupRoot));
  return {};
}

volatile pid_t g_exec_child = 0;
void forward_signal(int sig) {
  if (g_exec_child > 0) ::kill(g_exec_child, sig);
}

bool write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace

struct ControlCommands::State {
  std::string socket = paths::kControlSocket;
  bool json = false;
  CLI::App* nonce = nullptr;
  CLI::App* submit = nullptr;
  CLI::App* grants = nullptr;
  CLI::App* revoke = nullptr;
  CLI::App* exec = nullptr;
  std::string request_file;
  std::vector<std::string> sig_files;
  uint32_t revoke_id = 0;
  std::vector<std::string> command;

  int run_nonce() const {
    auto a = call(socket, {{"op", "nonce"}});
    if (a.rc) return a.rc;
    if (json)
      std::printf("%s\n", a.body.dump().c_str());
    else
      std::printf("%s\n", a.body["nonce"].get<std::string>().c_str());
    return 0;
  }

  int run_submit() const {
    auto body = submit_body(request_file, sig_files);
    if (!body) return 2;
    auto a = call(socket, *body);
    if (a.rc) return a.rc;
    if (json) {
      std::printf("%s\n", a.body.dump().c_str());
    } else {
      std::printf("grant %u: %s on %s, %lld use(s), scope %s, until %s\n%s\n", a.body["grant_id"].get<unsigned>(),
                  a.body["class"].get<std::string>().c_str(), a.body["devices"].dump().c_str(),
                  static_cast<long long>(a.body["uses"].get<int64_t>()),
                  a.body.value("scope", std::string("any")).c_str(),
                  format_local_rfc3339_s(a.body["not_after"].get<int64_t>()).c_str(),
                  a.body["authorization"].get<std::string>().c_str());
    }
    return 0;
  }

  int run_grants() const {
    auto a = call(socket, {{"op", "grants"}});
    if (a.rc) return a.rc;
    if (json) {
      std::printf("%s\n", a.body["grants"].dump().c_str());
      return 0;
    }
    if (a.body["grants"].empty()) std::printf("no live grants\n");
    for (const auto& g : a.body["grants"])
      std::printf("%-4u %-12s uses left %-4lld until %s%s  %s\n", g["id"].get<unsigned>(),
                  g["class"].get<std::string>().c_str(), static_cast<long long>(g["uses_left"].get<int64_t>()),
                  format_local_rfc3339_s(g["not_after"].get<int64_t>()).c_str(), grant_scope_text(g).c_str(),
                  g["devices"].dump().c_str());
    return 0;
  }

  int run_revoke() const {
    auto a = call(socket, {{"op", "revoke"}, {"id", revoke_id}});
    if (a.rc) return a.rc;
    std::printf("grant %u revoked\n", revoke_id);
    return 0;
  }

  // The cgroup the signed request names: made here, joined, the grant
  // scoped to it by the daemon (it resolves the same path), the command run
  // inside it, the grant revoked and the cgroup removed when it ends.
  int run_exec() const {
    auto text = read_file(request_file, auth::kMaxRequestBytes + 1);
    if (!text) {
      std::fprintf(stderr, "gpugate exec: the request: %s\n", text.error().message.c_str());
      return 2;
    }
    auto req = auth::parse_request(*text, request_file);
    if (!req) {
      std::fprintf(stderr, "gpugate exec: %s\n", req.error().message.c_str());
      return 2;
    }
    if (req->scope.kind != auth::ScopeKind::kCgroup) {
      std::fprintf(stderr,
                   "gpugate exec: %s says scope: %s, but gpugate exec runs COMMAND in the cgroup the request names; "
                   "make the request with gpugate request new ... --scope exec (scope: cgroup=/gpugate-exec/NONCE), "
                   "or submit this one with gpugate request submit\n",
                   request_file.c_str(), auth::format_scope(req->scope).c_str());
      return 2;
    }
    if (auto r = ensure_cgroup2(); !r) return fail(r.error().message);
    const std::string& cgroup = req->scope.name;
    std::string dir = std::string(kCgroupRoot) + cgroup;
    // The parents (e.g. /gpugate-exec) may exist; the cgroup itself must not:
    // a fresh one holds no other process that could use the grant.
    for (size_t slash = cgroup.find('/', 1); slash != std::string::npos; slash = cgroup.find('/', slash + 1)) {
      std::string parent = std::string(kCgroupRoot) + cgroup.substr(0, slash);
      if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST)
        return fail(fmt::format("cannot create the cgroup {}: {}", parent, std::strerror(errno)));
    }
    if (::mkdir(dir.c_str(), 0755) != 0) {
      if (errno == EEXIST)
        return fail(
            fmt::format("the cgroup {} exists already: gpugate exec runs COMMAND in a cgroup of its own, made "
                        "for this request (is another gpugate exec running it?); make a new request with "
                        "--scope exec",
                        dir));
      return fail(fmt::format("cannot create the cgroup {}: {}", dir, std::strerror(errno)));
    }
    std::string home = own_cgroup();
    auto cleanup = [&] {
      (void)write_text(std::string(kCgroupRoot) + home + "/cgroup.procs", std::to_string(::getpid()));
      if (::rmdir(dir.c_str()) != 0)
        std::fprintf(stderr,
                     "gpugate exec: cannot remove the cgroup %s: %s (processes COMMAND left behind are still in it; "
                     "its grant is revoked); rmdir it when they end\n",
                     dir.c_str(), std::strerror(errno));
    };
    if (!write_text(dir + "/cgroup.procs", std::to_string(::getpid()))) {
      int e = errno;
      cleanup();
      return fail(fmt::format("cannot move into the cgroup {}: {}", dir, std::strerror(e)));
    }
    auto body = submit_body_of(*text, sig_files);  // the bytes whose scope was read
    if (!body) {
      cleanup();
      return 2;
    }
    auto a = call(socket, *body);
    if (a.rc) {
      cleanup();
      return a.rc;
    }
    uint32_t id = a.body.value("grant_id", 0u);
    std::fprintf(stderr, "gpugate exec: grant %u for %s, only inside the cgroup %s\n", id,
                 a.body.value("class", std::string()).c_str(), cgroup.c_str());
    // While COMMAND runs, a Ctrl-C is COMMAND's (the terminal sends it to
    // both); SIGTERM and SIGHUP are passed on. Either way this process lives
    // on to revoke the grant.
    struct sigaction ignore {
    }, forward{}, old_int{}, old_quit{}, old_term{}, old_hup{};
    ignore.sa_handler = SIG_IGN;
    forward.sa_handler = forward_signal;
    sigaction(SIGINT, &ignore, &old_int);
    sigaction(SIGQUIT, &ignore, &old_quit);
    pid_t child = ::fork();
    if (child == 0) {
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGQUIT, &old_quit, nullptr);
      std::vector<char*> argv;
      for (const auto& c : command) argv.push_back(const_cast<char*>(c.c_str()));
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      std::fprintf(stderr, "gpugate exec: %s: %s\n", argv[0], std::strerror(errno));
      _exit(127);
    }
    int status = 0;
    if (child < 0) {
      std::fprintf(stderr, "gpugate exec: fork: %s\n", std::strerror(errno));
      status = 126 << 8;
    } else {
      g_exec_child = child;
      sigaction(SIGTERM, &forward, &old_term);
      sigaction(SIGHUP, &forward, &old_hup);
      while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
      }
      g_exec_child = 0;
      sigaction(SIGTERM, &old_term, nullptr);
      sigaction(SIGHUP, &old_hup, nullptr);
    }
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGQUIT, &old_quit, nullptr);
    auto r = call(socket, {{"op", "revoke"}, {"id", id}});
    if (r.rc) std::fprintf(stderr, "gpugate exec: grant %u could not be revoked; it ends with its window\n", id);
    cleanup();
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
};

ControlCommands::ControlCommands(CLI::App& app, CLI::App* request) : state_(std::make_unique<State>()) {
  auto& s = *state_;
  auto socket_opt = [&](CLI::App* c) {
    c->add_option("--socket", s.socket, "gpugated's control socket")->capture_default_str();
    c->add_flag("--json", s.json, "The daemon's answer as JSON");
  };
  s.nonce = request->add_subcommand("nonce", "Ask gpugated for a single-use nonce to put into a request");
  socket_opt(s.nonce);
  s.submit = request->add_subcommand(
      "submit",
      "Hand a signed request to gpugated: it verifies the signatures, quorum, host, GPU, window and nonce, then "
      "installs a kernel grant and answers with its id. Exit: 0 granted, 1 refused (the reason is printed and "
      "recorded), 2 unreadable files, 3 gpugated not reachable");
  s.submit->add_option("REQUEST", s.request_file, "The request file")->required();
  s.submit->add_option("SIG", s.sig_files, "Signature files (ssh-keygen -Y sign output)")->required();
  socket_opt(s.submit);

  s.grants = app.add_subcommand("grants", "List live grants; 'grants revoke ID' ends one");
  socket_opt(s.grants);
  s.revoke = s.grants->add_subcommand("revoke", "Revoke a grant now (recorded)");
  s.revoke->add_option("ID", s.revoke_id, "Grant id (gpugate grants)")->required();

  s.exec = app.add_subcommand(
      "exec",
      "Run COMMAND with a grant that only it (and its children) can use: the request names a cgroup of its own "
      "(gpugate request new --scope exec: scope: cgroup=/gpugate-exec/NONCE); gpugate exec makes that cgroup, "
      "moves into it, submits, runs COMMAND there, revokes the grant when COMMAND ends and removes the cgroup. "
      "Exit: COMMAND's status, or 1 refused, 2 unreadable files or a request without a cgroup scope, 3 gpugated "
      "not reachable");
  s.exec->add_option("--request", s.request_file, "The request file")->required();
  s.exec->add_option("--sig", s.sig_files, "Signature files (repeatable)")->required();
  s.exec->add_option("--socket", s.socket, "gpugated's control socket")->capture_default_str();
  s.exec->add_option("COMMAND", s.command, "The command and its arguments, after --")->required();
}

ControlCommands::~ControlCommands() = default;

std::optional<int> ControlCommands::run() const {
  const auto& s = *state_;
  if (*s.nonce) return s.run_nonce();
  if (*s.submit) return s.run_submit();
  if (*s.revoke) return s.run_revoke();
  if (*s.grants) return s.run_grants();
  if (*s.exec) return s.run_exec();
  return std::nullopt;
}

}  // namespace gpugate::cli
