// refinery.v1.JobService over the JobManager.
#pragma once
#include "refinery/v1/job.grpc.pb.h"
#include "server/runtime/call_guard.h"

namespace refinery {

class JobManager;

class JobServiceImpl final : public v1::JobService::Service {
 public:
  JobServiceImpl(JobManager& jobs, CallGuard guard) : jobs_(jobs), guard_(guard) {}
  grpc::Status SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest*, v1::Job*) override;
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest*, v1::Job*) override;
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*, v1::ListJobsResponse*) override;
  grpc::Status CancelJob(grpc::ServerContext*, const v1::CancelJobRequest*, v1::Job*) override;
  grpc::Status ResumeJob(grpc::ServerContext*, const v1::ResumeJobRequest*, v1::Job*) override;
  grpc::Status DeleteJob(grpc::ServerContext*, const v1::DeleteJobRequest*, v1::DeleteJobResponse*) override;
  // Replays the events from `from_seq`, then follows the job live until it
  // ends. UNAVAILABLE when the server shuts down meanwhile: reconnect from
  // the last seq seen + 1.
  grpc::Status WatchJob(grpc::ServerContext*, const v1::WatchJobRequest*, grpc::ServerWriter<v1::JobEvent>*) override;
  grpc::Status SubmitSweep(grpc::ServerContext*, const v1::SubmitSweepRequest*, v1::Sweep*) override;
  grpc::Status GetSweep(grpc::ServerContext*, const v1::GetSweepRequest*, v1::Sweep*) override;
  grpc::Status ListSweeps(grpc::ServerContext*, const v1::ListSweepsRequest*, v1::ListSweepsResponse*) override;
  grpc::Status CancelSweep(grpc::ServerContext*, const v1::CancelSweepRequest*, v1::Sweep*) override;

 private:
  JobManager& jobs_;
  CallGuard guard_;
};

}  // namespace refinery
