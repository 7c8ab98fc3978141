#include "server/jobs/worker_group.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/base/error.h"

extern char** environ;

namespace refinery {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A TCP port free on loopback now, for the ranks' rendezvous (TCPStore).
int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) throw internal_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t n = sizeof a;
  if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &n) != 0) {
    const int e = errno;
    ::close(s);
    throw internal_error(std::string("cannot find a free port for the workers: ") + std::strerror(e));
  }
  ::close(s);
  return ntohs(a.sin_port);
}

std::string last_line(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + strsignal(WTERMSIG(status));
  return "ended";
}

struct Rank {
  pid_t pid = -1;
  std::optional<int> status;  // once reaped
  std::string log;
};

// Starts one rank; `out_fd` becomes its stdout and `log_fd` its stderr.
pid_t spawn(const std::vector<std::string>& argv_s, const std::vector<std::string>& env_s, int out_fd, int log_fd) {
  // Everything the child needs is built before fork(): after it, in a
  // threaded process, only async-signal-safe calls are allowed.
  std::vector<char*> argv, envp;
  for (const auto& a : argv_s) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env_s) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw internal_error(std::string("cannot start a worker: fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // dies with the job's thread, and so with refineryd
    if (::getppid() != parent) ::_exit(1);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the server's threads block the signals it waits for
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

}  // namespace

std::string find_worker_program() {
  if (const char* env = std::getenv("REFINERY_WORKER_PROGRAM"); env != nullptr && *env != '\0') {
    if (::access(env, X_OK) != 0) {
      throw failed_precondition(std::string("REFINERY_WORKER_PROGRAM=") + env + " is not an executable file");
    }
    return env;
  }
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& p : {self.parent_path() / "refinery-model",
                              self.parent_path().parent_path() / "tools" / "refinery-model" / "refinery-model"}) {
      if (::access(p.c_str(), X_OK) == 0) return p.string();
    }
  }
  throw failed_precondition(
      "jobs with workers run refinery-model, which is not beside refineryd (" + self.parent_path().string() +
      "); install it there or set REFINERY_WORKER_PROGRAM");
}

WorkerOutcome WorkerGroup::run(const WorkerGroupOptions& o,
                               const std::function<void(const nlohmann::json& event)>& on_event,
                               const std::function<bool()>& stopping) {
  if (o.workers < 1) throw invalid_argument("workers must be at least 1");
  if (!o.devices.empty() && static_cast<int>(o.devices.size()) != o.workers) {
    throw invalid_argument("give one device per worker");
  }
  fs::create_directories(o.log_dir);
  const int port = free_port();

  std::vector<std::string> base_env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    if (key == "RANK" || key == "WORLD_SIZE" || key == "LOCAL_RANK" || key == "MASTER_ADDR" || key == "MASTER_PORT") {
      continue;
    }
    base_env.push_back(kv);
  }

  int events[2];
  if (::pipe2(events, O_CLOEXEC) != 0) throw internal_error(std::string("pipe: ") + std::strerror(errno));
  const int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  std::vector<Rank> ranks(static_cast<size_t>(o.workers));
  auto kill_all = [&](int sig) {
    for (const Rank& r : ranks) {
      if (r.pid > 0 && !r.status) ::kill(r.pid, sig);
    }
  };
  auto reap = [&](bool block) {
    for (Rank& r : ranks) {
      if (r.pid <= 0 || r.status) continue;
      int status = 0;
      const pid_t got = ::waitpid(r.pid, &status, block ? 0 : WNOHANG);
      if (got == r.pid) r.status = status;
    }
  };
  try {
    for (int rank = 0; rank < o.workers; ++rank) {
      Rank& r = ranks[static_cast<size_t>(rank)];
      r.log = o.log_dir + "/worker-" + std::to_string(rank) + ".log";
      const int log_fd = ::open(r.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (log_fd < 0) throw internal_error("cannot open " + r.log + ": " + std::strerror(errno));
      std::vector<std::string> argv = {o.program, "refine"};
      argv.insert(argv.end(), o.args.begin(), o.args.end());
      argv.insert(argv.end(), {"--threads", std::to_string(o.threads_per_worker)});
      if (!o.devices.empty()) argv.insert(argv.end(), {"--device", o.devices[static_cast<size_t>(rank)]});
      if (rank == 0) argv.insert(argv.end(), {"--events", "-"});
      std::vector<std::string> env = base_env;
      env.push_back("RANK=" + std::to_string(rank));
      env.push_back("LOCAL_RANK=" + std::to_string(rank));
      env.push_back("WORLD_SIZE=" + std::to_string(o.workers));
      env.push_back("MASTER_ADDR=127.0.0.1");
      env.push_back("MASTER_PORT=" + std::to_string(port));
      try {
        r.pid = spawn(argv, env, rank == 0 ? events[1] : devnull, log_fd);
      } catch (...) {
        ::close(log_fd);
        throw;
      }
      ::close(log_fd);
    }
  } catch (...) {
    kill_all(SIGKILL);
    reap(true);
    ::close(events[0]);
    ::close(events[1]);
    ::close(devnull);
    throw;
  }
  ::close(events[1]);
  ::close(devnull);

  // Rank 0's events until its stdout closes and every rank has ended.
  std::string pending;
  bool open = true;
  std::optional<Clock::time_point> stop_sent, failure_seen;
  std::optional<size_t> first_failed;
  std::string event_error;
  char buf[65536];
  for (;;) {
    if (open) {
      pollfd p{events[0], POLLIN, 0};
      const int n = ::poll(&p, 1, 100);
      if (n > 0) {
        const ssize_t got = ::read(events[0], buf, sizeof buf);
        if (got > 0) {
          pending.append(buf, static_cast<size_t>(got));
          size_t nl;
          while ((nl = pending.find('\n')) != std::string::npos) {
            const std::string line = pending.substr(0, nl);
            pending.erase(0, nl + 1);
            if (line.empty()) continue;
            try {
              on_event(nlohmann::json::parse(line));
            } catch (const std::exception& e) {
              // The job cannot follow its own run: end it rather than train blind.
              if (event_error.empty()) event_error = e.what();
              kill_all(SIGKILL);
            }
          }
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
          open = false;
        }
      }
    } else {
      ::usleep(100 * 1000);
    }
    reap(false);
    for (size_t i = 0; i < ranks.size(); ++i) {
      const auto& s = ranks[i].status;
      if (s && !(WIFEXITED(*s) && WEXITSTATUS(*s) == 0) && !first_failed && !stop_sent) {
        first_failed = i;
        failure_seen = Clock::now();
      }
    }
    bool all_done = true;
    for (const Rank& r : ranks) all_done = all_done && r.status.has_value();
    if (all_done && !open) break;
    if (all_done) {
      // Every rank is gone; drain what rank 0 wrote before it went.
      continue;
    }
    if (!stop_sent && stopping()) {
      kill_all(SIGTERM);
      stop_sent = Clock::now();
    }
    if (stop_sent && seconds_since(*stop_sent) > o.stop_grace_s) kill_all(SIGKILL);
    if (failure_seen && seconds_since(*failure_seen) > o.failure_grace_s) kill_all(SIGKILL);
  }
  ::close(events[0]);

  if (!event_error.empty()) throw internal_error("the job could not read its workers' events: " + event_error);
  auto failure = [&](size_t i) {
    const Rank& r = ranks[i];
    const std::string last = last_line(r.log);
    return internal_error("worker " + std::to_string(i) + " of " + std::to_string(o.workers) + " " +
                          describe_exit(*r.status) + (last.empty() ? "" : ": " + last) + " (log: " + r.log + ")");
  };
  if (first_failed) throw failure(*first_failed);
  if (stop_sent) {
    // Asked to stop: ranks that stopped exit 1 after their checkpoint; one
    // still starting when the signal came dies of it, and the others then
    // fail their next collective. Any of these is the stop that was asked
    // for; rank 0's newest checkpoint is where the job resumes.
    for (const Rank& r : ranks) {
      if (!(WIFEXITED(*r.status) && WEXITSTATUS(*r.status) == 0)) return WorkerOutcome::kStopped;
    }
  }
  return WorkerOutcome::kFinished;
}

}  // namespace refinery
