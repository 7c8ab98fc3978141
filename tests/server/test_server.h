// An in-process refineryd: the real registry, engine and services on a real
// gRPC server bound to a free loopback port, with the fixture model
// registered as "tiny". With config.security.auth_tokens, calls need tokens.
#pragma once

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <memory>

#include "refinery/v1/embedding.grpc.pb.h"
#include "refinery/v1/index.grpc.pb.h"
#include "refinery/v1/job.grpc.pb.h"
#include "refinery/v1/model.grpc.pb.h"
#include "server/embedding/embedding_engine.h"
#include "server/embedding/embedding_metrics.h"
#include "server/embedding/embedding_service.h"
#include "server/index/index_registry.h"
#include "server/index/index_service.h"
#include "server/jobs/job_manager.h"
#include "server/jobs/job_metrics.h"
#include "server/jobs/job_service.h"
#include "server/metrics/metrics_registry.h"
#include "server/models/model_registry.h"
#include "server/models/model_service.h"
#include "server/runtime/access_control.h"
#include "server/runtime/call_guard.h"
#include "server/runtime/rpc_metrics.h"
#include "server/runtime/server_config.h"
#include "server/runtime/memory_budget.h"
#include "server/runtime/worker_pool.h"
#include "support/fixture.h"

namespace refinery::testing {

class TestServer {
 public:
  explicit TestServer(ServerConfig config = {}, const std::string& data_dir = "") : config_(std::move(config)) {
    ::mkdir((dir_ / "models").c_str(), 0755);
    testing::write_file(dir_ / "models/tiny.safetensors", testing::read_file(fixture("tiny.safetensors")));
    config_.data_dir = data_dir.empty() ? dir_ / "data" : data_dir;
    ::mkdir(config_.data_dir.c_str(), 0755);
    ModelRegistryOptions mo;
    mo.models_dir = dir_ / "models";
    mo.data_dir = config_.data_dir;
    mo.memory_budget_bytes = static_cast<int64_t>(config_.model_memory_budget_gb * (1 << 30));
    models_ = std::make_unique<ModelRegistry>(mo);
    indexes_ = std::make_unique<IndexRegistry>(config_.data_dir);
    pool_ = std::make_unique<WorkerPool>(2);
    decode_budget_ = std::make_unique<MemoryBudget>(config_.decode_memory_mb << 20);
    rpc_metrics_ = std::make_unique<RpcMetrics>(metrics_registry_);
    metrics_ = std::make_unique<EmbeddingMetrics>(metrics_registry_);
    engine_ = std::make_unique<EmbeddingEngine>(*models_, *pool_, *decode_budget_, config_.batcher,
                                                [this](const BatchStats& s) { metrics_->record_batch(s); });
    if (!config_.security.auth_tokens.empty()) access_ = std::make_unique<AccessControl>(config_.security.auth_tokens);
    const CallGuard guard(rpc_metrics_.get(), access_.get());
    // Client paths are confined only where the test configures roots.
    ModelPathPolicy paths;
    if (!config_.security.import_roots.empty()) paths.import_roots = PathRoots(config_.security.import_roots, "--import-root");
    if (!config_.security.export_roots.empty()) paths.export_roots = PathRoots(config_.security.export_roots, "--export-root");
    paths.allow_pickle = config_.security.allow_pickle;
    model_service_ = std::make_unique<ModelServiceImpl>(*models_, guard, paths);
    embedding_service_ = std::make_unique<EmbeddingServiceImpl>(*engine_, config_, guard, metrics_.get());
    index_service_ = std::make_unique<IndexServiceImpl>(*indexes_, *engine_, *models_, config_, guard);
    job_metrics_ = std::make_unique<JobMetrics>(metrics_registry_);
    JobManagerOptions jo;
    jo.data_dir = config_.data_dir;
    jo.device = "cpu";
    jo.max_queued_jobs = config_.max_queued_jobs;
    jo.default_checkpoint_every = config_.checkpoint_every;
    jo.max_step_events = config_.max_step_events;
    if (!config_.security.data_roots.empty()) jo.data_roots = PathRoots(config_.security.data_roots, "--data-root");
    job_manager_ = std::make_unique<JobManager>(jo, *models_, job_metrics_.get());
    job_manager_->start();
    job_service_ = std::make_unique<JobServiceImpl>(*job_manager_, guard);
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.SetMaxReceiveMessageSize(config_.max_message_mb << 20);
    b.RegisterService(model_service_.get());
    b.RegisterService(embedding_service_.get());
    b.RegisterService(index_service_.get());
    b.RegisterService(job_service_.get());
    server_ = b.BuildAndStart();
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials());
  }
  ~TestServer() {
    job_manager_->shutdown();
    server_->Shutdown();
    engine_->shutdown();
  }

  // What refineryd gives its HTTP API: a channel to these services in-process.
  std::shared_ptr<grpc::Channel> in_process_channel() {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(config_.max_message_mb << 20);
    args.SetMaxSendMessageSize(config_.max_message_mb << 20);
    return server_->InProcessChannel(args);
  }
  std::unique_ptr<v1::EmbeddingService::Stub> embedding() { return v1::EmbeddingService::NewStub(channel_); }
  std::unique_ptr<v1::ModelService::Stub> models() { return v1::ModelService::NewStub(channel_); }
  std::unique_ptr<v1::IndexService::Stub> indexes() { return v1::IndexService::NewStub(channel_); }
  std::unique_ptr<v1::JobService::Stub> jobs() { return v1::JobService::NewStub(channel_); }
  JobManager& job_manager() { return *job_manager_; }
  ModelRegistry& model_registry() { return *models_; }
  EmbeddingEngine& engine() { return *engine_; }
  const EmbeddingServiceImpl& embedding_service() const { return *embedding_service_; }
  MetricsRegistry& metrics() { return metrics_registry_; }
  AccessControl* access_control() { return access_.get(); }
  const std::string& data_dir() const { return config_.data_dir; }

 private:
  TempDir dir_;
  ServerConfig config_;
  MetricsRegistry metrics_registry_;
  std::unique_ptr<ModelRegistry> models_;
  std::unique_ptr<IndexRegistry> indexes_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<MemoryBudget> decode_budget_;
  std::unique_ptr<RpcMetrics> rpc_metrics_;
  std::unique_ptr<AccessControl> access_;  // with config.security.auth_tokens
  std::unique_ptr<EmbeddingMetrics> metrics_;
  std::unique_ptr<EmbeddingEngine> engine_;
  std::unique_ptr<ModelServiceImpl> model_service_;
  std::unique_ptr<EmbeddingServiceImpl> embedding_service_;
  std::unique_ptr<IndexServiceImpl> index_service_;
  std::unique_ptr<JobMetrics> job_metrics_;
  std::unique_ptr<JobManager> job_manager_;
  std::unique_ptr<JobServiceImpl> job_service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  int port_ = 0;
};

}  // namespace refinery::testing
