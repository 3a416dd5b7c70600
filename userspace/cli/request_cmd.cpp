// gpugate request new|sign|verify. Thin: arguments and printing; the work is
// in libgpugate (request.hpp, sshsig.hpp, allowed_signers.hpp, authorize.hpp).
#include "request_cmd.hpp"

#include <fcntl.h>
#include <openssl/sha.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "gpugate/authorize.hpp"
#include "gpugate/file.hpp"
#include "gpugate/hostinfo.hpp"
#include "gpugate/paths.hpp"
#include "gpugate/request.hpp"
#include "gpugate/sshsig.hpp"
#include "gpugate/timefmt.hpp"

namespace gpugate::cli {

using namespace gpugate::auth;

namespace {

// Exit statuses of the request subcommands (also in --help).
constexpr int kExitOk = 0;
constexpr int kExitRejected = 1;
constexpr int kExitUsage = 2;
constexpr int kExitPartly = 3;

constexpr const char* kRequestHelp =
    "Signed authorizations: prepare, sign and verify requests offline.\n\n"
    "  new     write a request (the nonce comes from gpugated)\n"
    "  sign    sign a request with ssh-keygen -Y sign (a key file, or ssh-agent with KEY.pub)\n"
    "  verify  check a request and its signatures against an allowed_signers file, as an investigator would\n\n"
    "Stock OpenSSH works too: ssh-keygen -Y sign -n gpugate-request@gpugate.dev -f KEY REQUEST\n\n"
    "Exit status: 0 success (verify: authorized, every signature good); 1 verify: not authorized (quorum not met,\n"
    "outside the window, wrong host or GPU, malformed request), or sign: ssh-keygen failed; 2 bad arguments or\n"
    "unreadable input (including a bad allowed_signers file); 3 verify: authorized, but some signatures were\n"
    "rejected (each is listed).";

int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Writes a new file; never replaces one (a second operator's signature may
// sit at the default name).
Result<void> write_new_file(const std::string& path, std::string_view data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return make_error(errno == EEXIST ? fmt::format("{} exists; remove it or pass another name with -o", path)
                                      : fmt::format("cannot create {}: {}", path, std::strerror(errno)));
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return make_error(fmt::format("cannot write {}: {}", path, std::strerror(errno)));
  }
  return {};
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  std::string out;
  for (unsigned char b : digest) out += fmt::format("{:02x}", b);
  return out;
}

// ---- new ----

struct NewArgs {
  std::string host, gpu, cls, scope = "any", not_before, not_after, valid_for, nonce, requester, reason, output;
  std::vector<std::string> params;
};

// --scope: the request's scope text, with the conveniences of the command
// line: "exec" (the cgroup gpugate exec makes for this nonce), a user name
// for uid=, and a /sys/fs/cgroup prefix left out of cgroup=.
Result<RequestScope> scope_from_option(std::string_view value, std::string_view nonce) {
  if (value == "exec") {
    bool is_nonce = nonce.size() == kNonceHexDigits && std::all_of(nonce.begin(), nonce.end(), [](char c) {
                      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                    });
    if (is_nonce) return parse_scope("cgroup=" + exec_cgroup_path(nonce));
    return make_error(
        fmt::format("--scope exec names the cgroup /gpugate-exec/NONCE, and --nonce {:?} is not a nonce; copy it "
                    "from gpugate request nonce",
                    nonce));
  }
  std::string text(value);
  if (value.starts_with("uid=") && value.size() > 4 && !std::isdigit(static_cast<unsigned char>(value[4]))) {
    std::string user(value.substr(4));
    std::vector<char> buf(16384);
    passwd pw{}, *found = nullptr;
    if (getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found)
      return make_error(
          fmt::format("--scope uid={}: no such user on this machine (getent passwd {}); give the uid "
                      "as a number",
                      user, user));
    text = fmt::format("uid={}", found->pw_uid);
  }
  if (value.starts_with("cgroup=/sys/fs/cgroup/")) text = "cgroup=" + std::string(value.substr(21));
  auto scope = parse_scope(text);
  if (!scope) return make_error("--scope: " + scope.error().message);
  return scope;
}

// validate_request says "request:LINE: FIELD: why"; on the command line the
// field is an option.
std::string as_option_error(const std::string& message) {
  std::string_view m = message;
  if (m.starts_with("request:")) {
    size_t sep = m.find(": ");
    if (sep != std::string_view::npos) m.remove_prefix(sep + 2);
  }
  for (std::string_view field :
       {"host", "gpu", "class", "param", "scope", "not-before", "not-after", "nonce", "requester", "reason"}) {
    if (m.starts_with(std::string(field) + ": "))
      return fmt::format("--{}: {}", field == "not-after" ? "not-after/--valid-for" : field,
                         m.substr(field.size() + 2));
  }
  return std::string(m);
}

int cmd_new(const NewArgs& a) {
  auto fail = [](const std::string& why) {
    std::fprintf(stderr, "gpugate request new: %s\n", why.c_str());
    return kExitUsage;
  };
  AuthRequest req;
  req.host = a.host.empty() ? HostInfo::load(paths::kStateDir).host_id : a.host;
  req.gpu = a.gpu;
  req.class_name = a.cls;
  for (const auto& p : a.params) {
    size_t eq = p.find('=');
    if (eq == std::string::npos) return fail(fmt::format("--param {}: write it as name=value", p));
    req.params.push_back({p.substr(0, eq), p.substr(eq + 1)});
  }
  std::sort(req.params.begin(), req.params.end(),
            [](const RequestParam& x, const RequestParam& y) { return x.name < y.name; });
  auto scope = scope_from_option(a.scope, a.nonce);
  if (!scope) return fail(scope.error().message);
  req.scope = std::move(*scope);
  if (auto dup = std::adjacent_find(req.params.begin(), req.params.end(),
                                    [](const RequestParam& x, const RequestParam& y) { return x.name == y.name; });
      dup != req.params.end())
    return fail(fmt::format("--param {} is given twice; keep one", dup->name));
  if (a.not_before.empty()) {
    req.not_before = now_unix();
  } else {
    auto t = parse_request_time(a.not_before);
    if (!t) return fail("--not-before: " + t.error().message);
    req.not_before = *t;
  }
  if (!a.not_after.empty()) {
    auto t = parse_request_time(a.not_after);
    if (!t) return fail("--not-after: " + t.error().message);
    req.not_after = *t;
  } else {
    auto d = parse_duration(a.valid_for.empty() ? "15m" : a.valid_for);
    if (!d) return fail("--valid-for: " + d.error().message);
    req.not_after = req.not_before + *d;
  }
  req.nonce = a.nonce;
  req.requester = a.requester;
  req.reason = a.reason;
  if (auto valid = validate_request(req); !valid) return fail(as_option_error(valid.error().message));
  std::string text = render_request(req);
  if (a.output.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return kExitOk;
  }
  if (auto w = write_new_file(a.output, text); !w) return fail(w.error().message);
  std::fprintf(stderr, "wrote %s; sign it with: gpugate request sign %s -f ~/.ssh/id_ed25519\n", a.output.c_str(),
               a.output.c_str());
  return kExitOk;
}

// ---- sign ----

struct SignArgs {
  std::string request, key, output;
};

std::string describe(const AuthRequest& r) {
  std::string params;
  for (const auto& p : r.params) params += fmt::format(" {}={}", p.name, p.value);
  std::string scope = format_scope(r.scope);
  if (r.scope.kind == ScopeKind::kUnit) scope += fmt::format(" (the cgroup {})", r.scope.cgroup_path());
  if (r.scope.kind == ScopeKind::kAny) scope += " (every process on the host)";
  return fmt::format(
      "  host       {}\n  gpu        {}\n  class      {}{}\n  scope      {}\n  window     {} to {}\n"
      "  (local)    {} to {}\n  nonce      {}\n  requester  {}\n  reason     {}\n",
      r.host, r.gpu, r.class_name, params.empty() ? "" : fmt::format("\n  params    {}", params), scope,
      format_request_time(r.not_before), format_request_time(r.not_after), format_local_rfc3339_s(r.not_before),
      format_local_rfc3339_s(r.not_after), r.nonce, r.requester, r.reason);
}

int cmd_sign(const SignArgs& a) {
  auto fail = [](const std::string& why, int code = kExitUsage) {
    std::fprintf(stderr, "gpugate request sign: %s\n", why.c_str());
    return code;
  };
  auto text = read_file(a.request, kMaxRequestBytes + 1);
  if (!text) return fail(text.error().message);
  // Sign only what gpugated will accept, and show what is being signed.
  auto req = parse_request(*text, a.request);
  if (!req) return fail(req.error().message + "\nrefusing to sign a request gpugated would reject");
  std::fprintf(stderr, "signing %s:\n%s", a.request.c_str(), describe(*req).c_str());
  if (now_unix() >= req->not_after)
    std::fprintf(stderr, "warning: this request expired at %s; gpugated will refuse it\n",
                 format_request_time(req->not_after).c_str());
  if (a.key.ends_with(".pub") && !std::getenv("SSH_AUTH_SOCK"))
    return fail(
        fmt::format("{} is a public key, so ssh-keygen signs through ssh-agent, but SSH_AUTH_SOCK is not "
                    "set; start ssh-agent and ssh-add the key, or pass the private key file",
                    a.key));
  if (::access(a.key.c_str(), R_OK) != 0)
    return fail(fmt::format("cannot read key {}: {}", a.key, std::strerror(errno)));
  std::string output = a.output.empty() ? a.request + ".sig" : a.output;
  if (::access(output.c_str(), F_OK) == 0)
    return fail(fmt::format("{} exists (another signer's signature?); pass another name with -o, e.g. -o {}.$USER.sig",
                            output, a.request));

  // ssh-keygen signs stdin to stdout when given no file, so it never asks
  // about overwriting and we choose the output name.
  std::string tmp = output + ".tmp";
  int in_fd = ::open(a.request.c_str(), O_RDONLY | O_CLOEXEC);
  int out_fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (in_fd < 0 || out_fd < 0) {
    if (in_fd >= 0) ::close(in_fd);
    if (out_fd >= 0) ::close(out_fd);
    return fail(fmt::format("cannot open {} or create {}: {}", a.request, tmp, std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_fd, 0);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  const char* keygen = std::getenv("GPUGATE_SSH_KEYGEN") ? std::getenv("GPUGATE_SSH_KEYGEN") : "ssh-keygen";
  std::vector<std::string> args = {keygen, "-Y", "sign", "-n", std::string(kSignatureNamespace), "-f", a.key};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  int spawn_rc = posix_spawnp(&pid, keygen, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in_fd);
  ::close(out_fd);
  if (spawn_rc != 0) {
    ::unlink(tmp.c_str());
    return fail(fmt::format("cannot run {}: {}; install openssh-client", keygen, std::strerror(spawn_rc)));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ::unlink(tmp.c_str());
    return fail(fmt::format("ssh-keygen -Y sign failed (status {}); see its message above", WEXITSTATUS(status)),
                kExitRejected);
  }
  // Check what ssh-keygen made before handing it on.
  auto armored = read_file(tmp, 64 * 1024);
  auto sig = armored ? parse_sshsig(*armored) : Result<SshSignature>(armored.error());
  if (sig) {
    if (auto v = verify_sshsig(*sig, *text, kSignatureNamespace); !v) sig = v.error();
  }
  if (!sig) {
    ::unlink(tmp.c_str());
    return fail("ssh-keygen wrote a signature gpugate cannot use: " + sig.error().message, kExitRejected);
  }
  if (::link(tmp.c_str(), output.c_str()) != 0) {  // link: fails instead of replacing
    int e = errno;
    ::unlink(tmp.c_str());
    return fail(fmt::format("cannot create {}: {}", output, std::strerror(e)));
  }
  ::unlink(tmp.c_str());
  std::fprintf(stderr, "wrote %s (%s key %s)\n", output.c_str(), std::string(sig->key.short_type()).c_str(),
               sig->key.fingerprint().c_str());
  return kExitOk;
}

// ---- verify ----

struct VerifyArgs {
  std::string request, allowed_signers, at, host;
  std::vector<std::string> signatures, groups, gpus;
  bool json = false;
};

nlohmann::ordered_json request_json(const AuthRequest& r) {
  nlohmann::ordered_json j;
  j["host"] = r.host;
  j["gpu"] = r.gpu;
  j["class"] = r.class_name;
  j["params"] = nlohmann::ordered_json::object();
  for (const auto& p : r.params) j["params"][p.name] = p.value;
  j["scope"] = format_scope(r.scope);
  j["not_before"] = format_request_time(r.not_before);
  j["not_after"] = format_request_time(r.not_after);
  j["nonce"] = r.nonce;
  j["requester"] = r.requester;
  j["reason"] = r.reason;
  return j;
}

int cmd_verify(const VerifyArgs& a) {
  auto usage = [](const std::string& why) {
    std::fprintf(stderr, "gpugate request verify: %s\n", why.c_str());
    return kExitUsage;
  };
  int64_t at = now_unix();
  if (!a.at.empty()) {
    auto t = parse_request_time(a.at);
    if (!t) return usage("--at: " + t.error().message);
    at = *t;
  }
  std::vector<SignerGroup> groups;
  for (const auto& spec : a.groups) {
    auto g = parse_signer_group(spec);
    if (!g) return usage("--group: " + g.error().message);
    groups.push_back(std::move(*g));
  }
  auto signers_text = read_file(a.allowed_signers, 4 * 1024 * 1024);
  if (!signers_text) return usage("--allowed-signers: " + signers_text.error().message);
  auto signers = AllowedSigners::parse(*signers_text, a.allowed_signers);
  if (!signers) return usage(signers.error().message);
  auto text = read_file(a.request, kMaxRequestBytes + 1);
  if (!text) return usage(text.error().message);
  std::vector<SignatureInput> inputs;
  for (const auto& path : a.signatures) {
    auto armored = read_file(path, 64 * 1024);
    if (!armored) return usage(armored.error().message);
    inputs.push_back({path, std::move(*armored)});
  }

  // Every check runs, so the report is complete; the worst decides the exit.
  std::vector<std::string> problems;
  auto req = parse_request(*text, a.request);
  if (!req) {
    problems.push_back(req.error().message);
  } else {
    std::vector<std::string> gpu_names = a.gpus.empty() ? std::vector<std::string>{req->gpu} : a.gpus;
    auto scope = check_request_scope(*req, a.host.empty() ? req->host : a.host, gpu_names, at);
    if (!scope) problems.push_back(scope.error().message);
  }
  Authorization auth = authorize(*text, inputs, *signers, kSignatureNamespace, at, groups);
  if (!auth.quorum_met)
    problems.push_back(groups.empty() ? "no signature is good" : "no signer group's threshold is met");
  int exit_code = !problems.empty() ? kExitRejected : auth.all_signatures_good() ? kExitOk : kExitPartly;

  if (a.json) {
    nlohmann::ordered_json j;
    j["request_file"] = a.request;
    j["request_sha256"] = sha256_hex(*text);
    if (req) j["request"] = request_json(*req);
    j["namespace"] = kSignatureNamespace;
    j["at"] = format_request_time(at);
    j["allowed_signers"] = a.allowed_signers;
    j["allowed_signers_sha256"] = sha256_hex(*signers_text);
    j["signatures"] = nlohmann::ordered_json::array();
    for (const auto& s : auth.signatures) {
      nlohmann::ordered_json sj;
      sj["file"] = s.label;
      sj["counted"] = s.counted;
      sj["duplicate"] = s.duplicate;
      sj["key"] = s.key_fingerprint;
      sj["key_type"] = s.key_type;
      sj["signature_algorithm"] = s.signature_algorithm;
      sj["hash_algorithm"] = s.hash_algorithm;
      sj["principals"] = s.principals;
      sj["allowed_by"] = s.sources;
      if (s.security_key) {
        sj["sk_flags"] = s.sk_flags;
        sj["sk_counter"] = s.sk_counter;
      }
      if (!s.error.empty()) sj["error"] = s.error;
      j["signatures"].push_back(sj);
    }
    j["groups"] = nlohmann::ordered_json::array();
    for (const auto& g : auth.groups) {
      nlohmann::ordered_json gj;
      gj["name"] = g.name;
      gj["threshold"] = g.threshold;
      gj["break_glass"] = g.break_glass;
      gj["met"] = g.met;
      gj["credited"] = nlohmann::ordered_json::array();
      for (const auto& [principal, key] : g.credited)
        gj["credited"].push_back({{"principal", principal}, {"key", key}});
      gj["explanation"] = g.explanation;
      j["groups"].push_back(gj);
    }
    j["problems"] = problems;
    j["authorized"] = problems.empty();
    j["exit"] = exit_code;
    std::printf("%s\n", j.dump(2).c_str());
    return exit_code;
  }
  std::printf("request %s (sha256 %s), checked at %s (%s)\n", a.request.c_str(), sha256_hex(*text).c_str(),
              format_request_time(at).c_str(), format_local_rfc3339_s(at).c_str());
  if (req) std::printf("%s", describe(*req).c_str());
  std::printf("%s", auth.summary().c_str());
  for (const auto& p : problems) std::printf("NOT AUTHORIZED: %s\n", p.c_str());
  if (problems.empty())
    std::printf("%s\n", exit_code == kExitOk ? "AUTHORIZED" : "AUTHORIZED (some signatures were rejected, see above)");
  return exit_code;
}

}  // namespace

struct RequestCommands::State {
  CLI::App* request = nullptr;
  CLI::App* new_cmd = nullptr;
  CLI::App* sign_cmd = nullptr;
  CLI::App* verify_cmd = nullptr;
  NewArgs new_args;
  SignArgs sign_args;
  VerifyArgs verify_args;
};

RequestCommands::RequestCommands(CLI::App& app) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.request = app.add_subcommand("request", kRequestHelp);
  s.request->require_subcommand(1);

  s.new_cmd = s.request->add_subcommand("new", "Write a canonical request text (to stdout, or -o FILE)");
  NewArgs& n = s.new_args;
  s.new_cmd->add_option("--host", n.host,
                        "Host id the request is for (default: this host's, as gpugated knows it: /etc/machine-id, else "
                        "the one kept in /var/lib/gpugate)");
  s.new_cmd->add_option("--gpu", n.gpu, "GPU UUID (GPU-...), PCI address (0000:3b:00.0) or index")->required();
  s.new_cmd->add_option("--class", n.cls, "Command class, e.g. power.limit, power.off, gpu.reset")->required();
  s.new_cmd->add_option("--param", n.params, "Parameter name=value, e.g. power_limit_mw=250000 (repeatable)");
  s.new_cmd
      ->add_option("--scope", n.scope,
                   "Which processes may use the grant (signed, enforced by the kernel): any, uid=N or uid=NAME, "
                   "cgroup=/PATH (a cgroup v2 from the root of the hierarchy), unit=NAME.service (the cgroup "
                   "/system.slice/NAME.service), or exec (the cgroup gpugate exec makes: cgroup=/gpugate-exec/NONCE)")
      ->capture_default_str();
  s.new_cmd->add_option("--not-before", n.not_before,
                        "Start of the window, UTC, e.g. 2026-11-28T09:40:00Z (default: now)");
  auto* not_after = s.new_cmd->add_option("--not-after", n.not_after, "End of the window, UTC");
  auto* valid_for = s.new_cmd->add_option("--valid-for", n.valid_for,
                                          "Window length instead of --not-after: 90s, 15m, 2h (default 15m)");
  not_after->excludes(valid_for);
  s.new_cmd->add_option("--nonce", n.nonce, "The 32-hex-digit nonce gpugated issued for this request")->required();
  s.new_cmd->add_option("--requester", n.requester, "Who asks, e.g. alice@example.org")->required();
  s.new_cmd->add_option("--reason", n.reason, "Why, e.g. a ticket number and a few words")->required();
  s.new_cmd->add_option("-o,--output", n.output, "Write to FILE (never replaces one) instead of stdout");

  s.sign_cmd = s.request->add_subcommand(
      "sign", "Sign REQUEST with ssh-keygen -Y sign; KEY may be KEY.pub with the private key in ssh-agent");
  SignArgs& g = s.sign_args;
  s.sign_cmd->add_option("REQUEST", g.request, "Request file")->required();
  s.sign_cmd->add_option("-f,--key", g.key, "SSH private key, or KEY.pub for a key held by ssh-agent")->required();
  s.sign_cmd->add_option("-o,--output", g.output, "Signature file (default REQUEST.sig; never replaced)");

  s.verify_cmd = s.request->add_subcommand(
      "verify",
      "Check REQUEST and SIG files against an allowed_signers file (offline, e.g. for an investigation). Exit 0 "
      "authorized and every signature good, 1 not authorized, 2 bad arguments or unreadable input, 3 authorized "
      "but some signatures rejected");
  VerifyArgs& v = s.verify_args;
  s.verify_cmd->add_option("REQUEST", v.request, "Request file")->required();
  s.verify_cmd->add_option("SIG", v.signatures, "Signature files (ssh-keygen -Y sign output)")->required();
  s.verify_cmd->add_option("--allowed-signers", v.allowed_signers, "OpenSSH allowed_signers file")->required();
  s.verify_cmd->add_option("--group", v.groups,
                           "Signer group NAME:K:principal,principal,... (repeatable; authorized when one is met; "
                           "default: one good signature)");
  s.verify_cmd->add_option("--at", v.at,
                           "Check as of this UTC time, e.g. the decision time from the log (default: now)");
  s.verify_cmd->add_option("--host", v.host, "Also require the request to be for this host id");
  s.verify_cmd->add_option("--gpu", v.gpus, "Also require the request's GPU to be one of these names (repeatable)");
  s.verify_cmd->add_flag("--json", v.json, "Print the report as JSON");
}

RequestCommands::~RequestCommands() = default;

CLI::App* RequestCommands::request() const { return state_->request; }

std::optional<int> RequestCommands::run() const {
  if (*state_->new_cmd) return cmd_new(state_->new_args);
  if (*state_->sign_cmd) return cmd_sign(state_->sign_args);
  if (*state_->verify_cmd) return cmd_verify(state_->verify_args);
  return std::nullopt;
}

}  // namespace gpugate::cli
