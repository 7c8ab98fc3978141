#include "server/metrics/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <exception>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "server/metrics/metrics_registry.h"

namespace refinery {

namespace {

// Fields of /proc/self/stat after the "(comm)" field, which may itself hold
// spaces and parentheses, hence the split at the last ')'. Index 0 is field 3
// ("state") of proc(5).
std::vector<std::string> read_proc_stat_fields(const char* path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return {};
  const auto close = line.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream rest(line.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string field; rest >> field;) fields.push_back(field);
  return fields;
}

// proc(5) field numbers, converted to indexes into read_proc_stat_fields().
constexpr std::size_t stat_index(std::size_t field) { return field - 3; }
constexpr std::size_t kNumThreads = stat_index(20);
constexpr std::size_t kStartTime = stat_index(22);
constexpr std::size_t kVsize = stat_index(23);
constexpr std::size_t kRss = stat_index(24);

bool parse_double(const std::vector<std::string>& fields, std::size_t index, double& out) {
  if (index >= fields.size()) return false;
  try {
    out = std::stod(fields[index]);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// Boot time in seconds since the epoch, from the "btime" line of /proc/stat.
bool read_boot_time(double& out) {
  std::ifstream in("/proc/stat");
  for (std::string key; in >> key;) {
    if (key == "btime") return static_cast<bool>(in >> out);
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return false;
}

// Entries of /proc/self/fd, not counting the descriptor opendir() itself holds.
bool count_open_fds(double& out) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return false;
  const int own_fd = dirfd(dir);
  const std::string own = std::to_string(own_fd);
  double count = 0;
  while (const dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == ".." || name == own) continue;
    ++count;
  }
  closedir(dir);
  out = count;
  return true;
}

}  // namespace

void register_process_metrics(MetricsRegistry& registry) {
  Counter& cpu =
      registry.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.").with();
  Gauge& rss = registry.gauge("process_resident_memory_bytes", "Resident memory size in bytes.").with();
  Gauge& vsize = registry.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.").with();
  Gauge& start = registry.gauge("process_start_time_seconds",
                                "Start time of the process since unix epoch in seconds.").with();
  Gauge& open_fds = registry.gauge("process_open_fds", "Number of open file descriptors.").with();
  Gauge& max_fds = registry.gauge("process_max_fds", "Maximum number of open file descriptors.").with();
  Gauge& threads = registry.gauge("process_threads", "Number of OS threads in the process.").with();

  // The start time never changes: compute it once, from ticks after boot.
  const double ticks_per_second = static_cast<double>(sysconf(_SC_CLK_TCK));
  double boot_time = 0, start_ticks = 0;
  if (ticks_per_second > 0 && read_boot_time(boot_time) &&
      parse_double(read_proc_stat_fields("/proc/self/stat"), kStartTime, start_ticks)) {
    start.Set(boot_time + start_ticks / ticks_per_second);
  }
  const double page_size = static_cast<double>(sysconf(_SC_PAGESIZE));

  // The collector only captures children the registry owns, so it can never
  // outlive what it writes to.
  registry.add_collector([&cpu, &rss, &vsize, &open_fds, &max_fds, &threads, page_size] {
    // getrusage has microsecond resolution; /proc/self/stat only clock ticks.
    rusage usage{};
    if (getrusage(RUSAGE_SELF, &usage) == 0) {
      set_counter_total(cpu, static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                    static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6);
    }
    const std::vector<std::string> fields = read_proc_stat_fields("/proc/self/stat");
    double value = 0;
    if (parse_double(fields, kRss, value)) rss.Set(value * page_size);
    if (parse_double(fields, kVsize, value)) vsize.Set(value);
    if (parse_double(fields, kNumThreads, value)) threads.Set(value);
    if (count_open_fds(value)) open_fds.Set(value);
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
      max_fds.Set(limit.rlim_cur == RLIM_INFINITY ? INFINITY : static_cast<double>(limit.rlim_cur));
    }
  });
}

}  // namespace refinery
