#include "control_cmd.hpp"

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

// {"request": TEXT, "signatures": [...]} from files.
std::optional<nlohmann::json> submit_body(const std::string& request_file, const std::vector<std::string>& sig_files) {
  nlohmann::json body{{"op", "submit"}};
  // The same bounds as gpugate request verify: the parser names an oversized request.
  auto text = read_file(request_file, auth::kMaxRequestBytes + 1);
  if (!text) {
    std::fprintf(stderr, "gpugate: the request: %s\n", text.error().message.c_str());
    return std::nullopt;
  }
  body["request"] = *text;
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
      std::printf("grant %u: %s on %s, %lld use(s), until %s\n%s\n", a.body["grant_id"].get<unsigned>(),
                  a.body["class"].get<std::string>().c_str(), a.body["devices"].dump().c_str(),
                  static_cast<long long>(a.body["uses"].get<int64_t>()),
                  std::to_string(a.body["not_after"].get<int64_t>()).c_str(),
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
      std::printf(
          "%-4u %-12s uses left %-4lld until %lld%s  %s\n", g["id"].get<unsigned>(),
          g["class"].get<std::string>().c_str(), static_cast<long long>(g["uses_left"].get<int64_t>()),
          static_cast<long long>(g["not_after"].get<int64_t>()),
          g.value("scope", std::string("any")) == "any"
              ? ""
              : fmt::format(" {} {}", g.value("scope", std::string()), g.value("scope_id", uint64_t{0})).c_str(),
          g["devices"].dump().c_str());
    return 0;
  }

  int run_revoke() const {
    auto a = call(socket, {{"op", "revoke"}, {"id", revoke_id}});
    if (a.rc) return a.rc;
    std::printf("grant %u revoked\n", revoke_id);
    return 0;
  }

  // A cgroup of its own for the command; the grant is scoped to it and
  // revoked when the command ends.
  int run_exec() const {
    if (auto r = ensure_cgroup2(); !r) return fail(r.error().message);
    std::string home = own_cgroup();
    std::string dir = fmt::format("{}/gpugate-exec-{}", kCgroupRoot, ::getpid());
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
      return fail(fmt::format("cannot create the cgroup {}: {}", dir, std::strerror(errno)));
    struct stat st {};
    ::stat(dir.c_str(), &st);
    auto cleanup = [&] {
      (void)write_text(std::string(kCgroupRoot) + home + "/cgroup.procs", std::to_string(::getpid()));
      ::rmdir(dir.c_str());
    };
    if (!write_text(dir + "/cgroup.procs", std::to_string(::getpid()))) {
      cleanup();
      return fail(fmt::format("cannot move into {}: {}", dir, std::strerror(errno)));
    }
    auto body = submit_body(request_file, sig_files);
    if (!body) {
      cleanup();
      return 2;
    }
    (*body)["cgroup_id"] = static_cast<uint64_t>(st.st_ino);
    auto a = call(socket, *body);
    if (a.rc) {
      cleanup();
      return a.rc;
    }
    uint32_t id = a.body["grant_id"].get<uint32_t>();
    std::fprintf(stderr, "gpugate exec: grant %u for %s, only inside cgroup %s\n", id,
                 a.body["class"].get<std::string>().c_str(), dir.c_str());
    pid_t child = ::fork();
    if (child == 0) {
      std::vector<char*> argv;
      for (const auto& c : command) argv.push_back(const_cast<char*>(c.c_str()));
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      std::fprintf(stderr, "gpugate exec: %s: %s\n", argv[0], std::strerror(errno));
      _exit(127);
    }
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
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
      "Run COMMAND with a grant that only it (and its children) can use: a cgroup v2 of its own, the grant scoped "
      "to it, revoked when COMMAND ends. Exit: COMMAND's status, or 1 refused, 2 unreadable files, 3 gpugated not "
      "reachable");
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
