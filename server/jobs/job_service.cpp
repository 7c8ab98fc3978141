#include "server/jobs/job_service.h"

#include "core/base/error.h"
#include "server/jobs/job_manager.h"

namespace refinery {
namespace {

void require_id(const std::string& id) {
  if (id.empty()) throw invalid_argument("a job id is required");
}

}  // namespace

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request, v1::Job* response) {
  return guard_(context, "SubmitJob", [&] { *response = jobs_.submit(request->spec(), request->client_request_id()); });
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request, v1::Job* response) {
  return guard_(context, "GetJob", [&] {
    require_id(request->id());
    *response = jobs_.get(request->id());
  });
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                                      v1::ListJobsResponse* response) {
  return guard_(context, "ListJobs", [&] {
    std::vector<v1::JobState> states;
    for (int s : request->states()) states.push_back(static_cast<v1::JobState>(s));
    for (v1::Job& j : jobs_.list(states)) *response->add_jobs() = std::move(j);
  });
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request, v1::Job* response) {
  return guard_(context, "CancelJob", [&] {
    require_id(request->id());
    *response = jobs_.cancel(request->id());
  });
}

grpc::Status JobServiceImpl::ResumeJob(grpc::ServerContext* context, const v1::ResumeJobRequest* request, v1::Job* response) {
  return guard_(context, "ResumeJob", [&] {
    require_id(request->id());
    *response = jobs_.resume(request->id());
  });
}

grpc::Status JobServiceImpl::DeleteJob(grpc::ServerContext* context, const v1::DeleteJobRequest* request,
                                       v1::DeleteJobResponse*) {
  return guard_(context, "DeleteJob", [&] {
    require_id(request->id());
    jobs_.remove(request->id());
  });
}

grpc::Status JobServiceImpl::WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                                      grpc::ServerWriter<v1::JobEvent>* writer) {
  return guard_(context, "WatchJob", [&] {
    require_id(request->id());
    if (request->from_seq() < 0) throw invalid_argument("from_seq must not be negative");
    int64_t next = std::max<int64_t>(request->from_seq(), 1);
    for (;;) {
      if (context->IsCancelled()) throw Error(ErrorCode::kCancelled, "the watcher went away");
      if (jobs_.stopping()) {
        throw Error(ErrorCode::kUnavailable,
                    "the server is shutting down: reconnect and watch from seq " + std::to_string(next));
      }
      bool finished = false;
      std::vector<v1::JobEvent> events = jobs_.events(request->id(), next, std::chrono::milliseconds(1000), &finished);
      for (const v1::JobEvent& e : events) {
        if (!writer->Write(e)) throw Error(ErrorCode::kCancelled, "the watcher went away");
        next = e.seq() + 1;
      }
      if (finished) return;
    }
  });
}

grpc::Status JobServiceImpl::SubmitSweep(grpc::ServerContext* context, const v1::SubmitSweepRequest* request,
                                         v1::Sweep* response) {
  return guard_(context, "SubmitSweep",
                 [&] { *response = jobs_.submit_sweep(request->spec(), request->client_request_id()); });
}

grpc::Status JobServiceImpl::GetSweep(grpc::ServerContext* context, const v1::GetSweepRequest* request, v1::Sweep* response) {
  return guard_(context, "GetSweep", [&] {
    if (request->id().empty()) throw invalid_argument("a sweep id is required");
    *response = jobs_.get_sweep(request->id());
  });
}

grpc::Status JobServiceImpl::ListSweeps(grpc::ServerContext* context, const v1::ListSweepsRequest*,
                                        v1::ListSweepsResponse* response) {
  return guard_(context, "ListSweeps", [&] {
    for (v1::Sweep& s : jobs_.list_sweeps()) *response->add_sweeps() = std::move(s);
  });
}

grpc::Status JobServiceImpl::CancelSweep(grpc::ServerContext* context, const v1::CancelSweepRequest* request,
                                         v1::Sweep* response) {
  return guard_(context, "CancelSweep", [&] {
    if (request->id().empty()) throw invalid_argument("a sweep id is required");
    *response = jobs_.cancel_sweep(request->id());
  });
}

}  // namespace refinery
