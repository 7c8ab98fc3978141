// The JobService calls that `jobs` and `eval` share: submitting a spec at
// most once (a random client request id unless one is given), and following
// a job's events to its end across server restarts: a watch reconnects from
// the last event it showed, so no event is lost or shown twice.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "client/job_display.h"
#include "client/server_connection.h"
#include "refinery/v1/job.grpc.pb.h"

namespace refinery::client {

constexpr double kDefaultReconnectTimeoutS = 120.0;

std::string random_request_id();

// check_status, and a word for the one failure gRPC leaves unexplained: a
// server without the call answers UNIMPLEMENTED with no message.
void check_job_status(const grpc::Status& status, const std::string& context = "");

grpc::Status get_job(const std::shared_ptr<grpc::Channel>& channel, double timeout_s, const std::string& id,
                     v1::Job* job);

// SubmitJob; a lost answer (UNAVAILABLE, DEADLINE_EXCEEDED) is reported with
// the request id to resubmit with.
v1::Job submit_job_spec(const ServerConnection& c, const v1::JobSpec& spec, const std::string& request_id);

// Shows the job's events from `from_seq` through `progress` until the job
// has finished, and returns the finished job. The stream has no deadline;
// while the server is unreachable it reconnects for reconnect_timeout_s.
v1::Job follow_job(const ServerConnection& c, const std::string& id, int64_t from_seq, double reconnect_timeout_s,
                   JobProgress& progress);

// Follows the job to its end: exit 0 if it SUCCEEDED; a FAILED or CANCELLED
// job is an error that carries the job's own.
int watch_to_end(const ServerConnection& c, const std::string& id, int64_t from_seq, double reconnect_timeout_s);

}  // namespace refinery::client
