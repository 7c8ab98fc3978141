// The standard process_* metrics every Prometheus client library exports
// (CPU time, memory, file descriptors, threads, start time), read from /proc
// at scrape time so dashboards and alerts written for other services work
// unchanged for refineryd.
#pragma once

namespace refinery {

class MetricsRegistry;

// Registers process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_start_time_seconds, process_open_fds,
// process_max_fds and process_threads, plus a collector that refreshes them.
// Values that cannot be read (no /proc outside Linux) keep their last value.
// Call it once per registry.
void register_process_metrics(MetricsRegistry& registry);

}  // namespace refinery
