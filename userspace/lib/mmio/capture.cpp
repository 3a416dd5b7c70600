// The kernel's mmiotrace, driven through tracefs: the tracer on, a command
// run (a driver load) or a window waited out, the tracer off, its pipe
// drained. While mmiotrace is on the kernel keeps one CPU online
// (arch/x86/mm/mmio-mod.c takes the others down and brings them back).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "gpugate/file.hpp"
#include "gpugate/mmio.hpp"
#include "gpugate/unique_fd.hpp"

extern char** environ;

namespace gpugate::mmio {
namespace {

constexpr long kTracefsMagic = 0x74726163;  // TRACEFS_MAGIC, include/uapi/linux/magic.h

std::atomic<bool> g_interrupted{false};

void on_signal(int) { g_interrupted = true; }

bool is_tracefs(const std::string& dir) {
  struct statfs st {};
  return ::statfs(dir.c_str(), &st) == 0 && st.f_type == kTracefsMagic;
}

Result<std::string> find_tracefs(const std::string& wanted) {
  if (!wanted.empty()) {
    if (is_tracefs(wanted)) return wanted;
    return make_error(fmt::format("{} is not a tracefs mount (mount -t tracefs nodev {})", wanted, wanted));
  }
  for (const char* dir : {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"})
    if (is_tracefs(dir)) return std::string(dir);
  if (::mount("nodev", "/sys/kernel/tracing", "tracefs", 0, nullptr) == 0) return std::string("/sys/kernel/tracing");
  return make_error(
      fmt::format("no tracefs found or mountable at /sys/kernel/tracing ({}); mount it (mount -t tracefs nodev "
                  "/sys/kernel/tracing) or pass --tracefs DIR",
                  std::strerror(errno)));
}

Result<void> write_control(const std::string& path, const std::string& value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
  if (!fd) return make_error(fmt::format("cannot open {}: {}", path, std::strerror(errno)), errno);
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
    return make_error(fmt::format("cannot write \"{}\" to {}: {}", value, path, std::strerror(errno)), errno);
  return {};
}

std::string first_line(const std::string& path) {
  auto text = read_file(path, 4096);
  if (!text) return {};
  auto nl = text->find('\n');
  return nl == std::string::npos ? *text : text->substr(0, nl);
}

// Everything the pipe has now; false once it reports an error.
bool drain(int fd, std::string& out) {
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    return n == 0 || errno == EAGAIN || errno == EINTR;
  }
}

// The CPUs online now, from /sys/devices/system/cpu/online ("0-3,5").
std::vector<unsigned> online_cpus() {
  std::vector<unsigned> out;
  std::string list = first_line("/sys/devices/system/cpu/online");
  size_t pos = 0;
  while (pos < list.size()) {
    size_t comma = list.find(',', pos);
    std::string part = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? list.size() : comma + 1;
    unsigned a = 0, b = 0;
    int n = std::sscanf(part.c_str(), "%u-%u", &a, &b);
    if (n == 1) b = a;
    if (n >= 1)
      for (unsigned c = a; c <= b && c < 4096; c++) out.push_back(c);
  }
  return out;
}

// mmiotrace takes every CPU but one down and is meant to bring them back
// when it stops; any it left down are brought back here, and said.
void restore_cpus(const std::vector<unsigned>& before, bool progress) {
  auto now = online_cpus();
  for (unsigned cpu : before) {
    if (std::find(now.begin(), now.end(), cpu) != now.end()) continue;
    auto r = write_control(fmt::format("/sys/devices/system/cpu/cpu{}/online", cpu), "1");
    if (progress || !r)
      std::fprintf(stderr, "gpugate mmio: CPU%u was still offline after the trace; %s\n", cpu,
                   r ? "brought it back online" : r.error().message.c_str());
  }
}

}  // namespace

Result<TraceResult> capture_trace(const CaptureOptions& opts) {
  auto dir = find_tracefs(opts.tracefs);
  if (!dir) return dir.error();
  auto tracers = read_file(*dir + "/available_tracers", 4096);
  if (!tracers) return tracers.error();
  if (tracers->find("mmiotrace") == std::string::npos)
    return make_error(fmt::format(
        "this kernel has no mmiotrace ({}/available_tracers: {}); it needs CONFIG_MMIOTRACE (Debian's kernels have "
        "it)",
        *dir, first_line(*dir + "/available_tracers")));
  std::string current = first_line(*dir + "/current_tracer");
  if (current != "nop")
    return make_error(
        fmt::format("the tracer \"{}\" is on ({}/current_tracer); another trace is running: stop it (echo nop > "
                    "{}/current_tracer) first",
                    current, *dir, *dir));
  std::string old_kb = first_line(*dir + "/buffer_size_kb");
  if (auto r = write_control(*dir + "/buffer_size_kb", std::to_string(opts.buffer_kb)); !r) return r.error();

  struct sigaction sa {
  }, old_int{}, old_term{};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  g_interrupted = false;
  const auto cpus_before = online_cpus();
  auto restore = [&] {
    (void)write_control(*dir + "/current_tracer", "nop");
    restore_cpus(cpus_before, opts.progress);
    if (!old_kb.empty()) (void)write_control(*dir + "/buffer_size_kb", old_kb);
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
  };

  if (opts.progress) std::fprintf(stderr, "gpugate mmio: mmiotrace on (one CPU stays online while it is)\n");
  if (auto r = write_control(*dir + "/current_tracer", "mmiotrace"); !r) {
    restore();
    return r.error();
  }
  // opened with the tracer on: mmiotrace writes its VERSION and PCIDEV header then
  UniqueFd pipe(::open((*dir + "/trace_pipe").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!pipe) {
    int err = errno;
    restore();
    return make_error(fmt::format("cannot open {}/trace_pipe: {}", *dir, std::strerror(err)), err);
  }
  TraceResult out;
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done) {
      pollfd p{pipe.get(), POLLIN, 0};
      ::poll(&p, 1, 100);
      drain(pipe.get(), out.text);
    }
  });

  Result<void> ran = {};
  if (!opts.command.empty()) {
    if (opts.progress) std::fprintf(stderr, "gpugate mmio: running %s\n", opts.command[0].c_str());
    std::vector<char*> argv;
    for (const auto& a : opts.command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t child = 0;
    int err = posix_spawnp(&child, argv[0], nullptr, nullptr, argv.data(), environ);
    if (err != 0) {
      ran = make_error(fmt::format("cannot run {}: {}", opts.command[0], std::strerror(err)), err);
    } else {
      int status = 0;
      while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
      }
      out.command_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
  } else {
    if (opts.progress) std::fprintf(stderr, "gpugate mmio: tracing for %u s (Ctrl-C ends it early)\n", opts.seconds);
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(opts.seconds);
    while (!g_interrupted && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  (void)write_control(*dir + "/current_tracer", "nop");
  // what the tracer queued before it stopped
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  done = true;
  reader.join();
  drain(pipe.get(), out.text);
  restore();
  if (opts.progress) std::fprintf(stderr, "gpugate mmio: mmiotrace off; %zu bytes of trace\n", out.text.size());
  if (!ran) return ran.error();
  return out;
}

}  // namespace gpugate::mmio
