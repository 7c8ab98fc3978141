#include "client/job_calls.h"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <random>
#include <thread>

#include "client/client_errors.h"
#include "client/output.h"
#include "core/base/error.h"
#include "core/base/progress_bar.h"

namespace refinery::client {
namespace {

using Clock = std::chrono::steady_clock;

constexpr double kFirstBackoffS = 0.5;
constexpr double kMaxBackoffS = 5.0;

// A broken watch worth resuming: the server went away (UNAVAILABLE) or ended
// the call itself while shutting down (CANCELLED; this client never cancels).
bool is_transient(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::CANCELLED;
}

}  // namespace

// Random, so that the same submit retried (by a script, or by hand with
// --request-id) creates the job at most once.
std::string random_request_id() {
  std::random_device device;
  std::mt19937_64 rng((static_cast<uint64_t>(device()) << 32) ^ device());
  char buf[40];
  std::snprintf(buf, sizeof buf, "cli-%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  return buf;
}

// check_status, and a word for the one failure gRPC leaves unexplained: a
// server without the call answers UNIMPLEMENTED with no message.
void check_job_status(const grpc::Status& status, const std::string& context) {
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED && status.error_message().empty()) {
    check_status(status, "the server does not offer this refinery.v1.JobService call; an older refineryd?");
  }
  check_status(status, context);
}

grpc::Status get_job(const std::shared_ptr<grpc::Channel>& channel, double timeout_s, const std::string& id,
                     v1::Job* job) {
  grpc::ClientContext context;
  set_deadline(context, timeout_s);
  v1::GetJobRequest request;
  request.set_id(id);
  return v1::JobService::NewStub(channel)->GetJob(&context, request, job);
}

// Shows the job's events from `from_seq` until the job has finished, and
// returns the finished job. The stream has no deadline: it lasts as long as
// the job does; --timeout bounds the GetJob calls only.
v1::Job follow_job(const ServerConnection& c, const std::string& id, int64_t from_seq, double reconnect_timeout_s,
                   JobProgress& progress) {
  std::shared_ptr<grpc::Channel> channel = c.channel();
  int64_t last_seq = std::max<int64_t>(from_seq - 1, 0);
  double backoff_s = kFirstBackoffS;
  bool broken = false;            // no event since the stream broke ...
  Clock::time_point broken_since;  // ... at this time
  for (;;) {
    grpc::ClientContext context;
    v1::WatchJobRequest request;
    request.set_id(id);
    request.set_from_seq(last_seq + 1);
    auto reader = v1::JobService::NewStub(channel)->WatchJob(&context, request);
    v1::JobEvent event;
    while (reader->Read(&event)) {
      broken = false;
      backoff_s = kFirstBackoffS;
      if (event.seq() <= last_seq) continue;  // replayed twice across a reconnect
      last_seq = event.seq();
      progress.show(event);
    }
    grpc::Status status = reader->Finish();
    std::string why;
    if (status.ok()) {
      v1::Job job;
      status = get_job(channel, c.options().timeout_s, id, &job);
      if (status.ok() && job_finished(job.state())) return job;
      if (status.ok()) why = "the event stream ended while the job is " + job_state_name(job.state());
    }
    if (!status.ok()) {
      if (!is_transient(status.error_code())) check_job_status(status, "watching job " + id);
      why = std::string(grpc_code_name(status.error_code())) + ": " + status.error_message();
    }
    const auto now = Clock::now();
    if (!broken) broken_since = now;
    broken = true;
    if (std::chrono::duration<double>(now - broken_since).count() >= reconnect_timeout_s) {
      const std::string resume = "gave up after " + format_fixed(reconnect_timeout_s, 0) +
                                 " s without events; resume with `refinery jobs watch " + id + " --from " +
                                 std::to_string(last_seq + 1) + "`";
      if (!status.ok()) check_job_status(status, resume);
      throw failed_precondition(why + "; " + resume);
    }
    progress.notice(why + "; reconnecting in " + format_fixed(backoff_s, 1) + " s from event " +
                    std::to_string(last_seq + 1));
    std::this_thread::sleep_for(std::chrono::duration<double>(backoff_s));
    backoff_s = std::min(backoff_s * 2, kMaxBackoffS);
    // A channel of its own: the old one may sit out gRPC's reconnect backoff
    // (up to two minutes) after the server is back.
    channel = make_channel(c.options(), /*own_connection=*/true);
  }
}

// Follows the job to its end: exit 0 if it SUCCEEDED; a FAILED or CANCELLED
// job is an error that carries the job's own.
int watch_to_end(const ServerConnection& c, const std::string& id, int64_t from_seq, double reconnect_timeout_s) {
  JobProgress progress(JobProgress::style_for(c.options().json));
  const v1::Job job = follow_job(c, id, from_seq, reconnect_timeout_s, progress);
  progress.finish();
  const std::string state = job_state_name(job.state());
  if (job.state() == v1::JOB_STATE_SUCCEEDED) {
    if (!c.options().json) {
      std::cout << "job " << job.id() << " SUCCEEDED";
      if (job.started_unix_ms() > 0 && job.finished_unix_ms() > 0) {
        std::cout << " in " << clock_duration((job.finished_unix_ms() - job.started_unix_ms()) / 1000.0);
      }
      if (!job.result_model().empty()) std::cout << ": model " << job.result_model();
      std::cout << '\n';
    }
    return 0;
  }
  throw failed_precondition("job " + job.id() + " " + state + (job.error().empty() ? "" : ": " + job.error()));
}

v1::Job submit_job_spec(const ServerConnection& c, const v1::JobSpec& spec, const std::string& request_id) {
  v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  request.set_client_request_id(request_id.empty() ? random_request_id() : request_id);
  v1::Job job;
  const auto status = v1::JobService::NewStub(c.channel())->SubmitJob(c.context().get(), request, &job);
  const auto code = status.error_code();
  if (code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED) {
    // The job may exist; the same request id cannot make a second one.
    check_job_status(status, "the job may or may not have been submitted; rerun with --request-id " +
                             request.client_request_id() + " to submit it at most once");
  }
  check_job_status(status);
  return job;
}

}  // namespace refinery::client
