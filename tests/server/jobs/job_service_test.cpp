// Refine jobs through the real JobService on an in-process server: a job
// trains the fixture model on a generated COCO caption set, streams numbered
// events, registers a model that serves at once; its first step's losses are
// the method's formulas on the base model's own embeddings; cancel, resume,
// delete, idempotent submit, a server restart mid-job, and bad specs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <atomic>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint_reader.h"
#include "core/data/caption_dataset.h"
#include "core/embedding/embedder.h"
#include "server/job_rpc.h"
#include "server/test_server.h"
#include "support/caption_fixture.h"

namespace refinery {
namespace {

using testing::TempDir;
using testing::TestServer;
using testing::Watched;
using testing::get;
using testing::states_of;
using testing::submit;
using testing::watch;

v1::JobSpec small_spec(const std::string& data) {
  v1::JobSpec s;
  s.set_base_model("tiny");
  s.set_data(data);
  s.set_batch_size(2);
  s.set_val_fraction(0.25);
  s.set_lr(1e-4);
  return s;
}

void expect_consecutive(const std::vector<v1::JobEvent>& events, int64_t first = 1) {
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].seq(), first + static_cast<int64_t>(i));
}

TEST(JobService, AJobSucceedsStreamsEveryStepAndItsModelServes) {
  TempDir dir;
  TestServer server;
  v1::JobSpec spec = small_spec(testing::make_coco_caption_set(dir / "data", {8, 2, 0}));
  spec.set_epochs(2);
  spec.set_eval_every(2);
  spec.set_name("tiny-aligned");
  v1::Job job = submit(server, spec);
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.total_steps(), 6);  // 6 training images / batch 2 x 2 epochs
  EXPECT_EQ(job.spec().method(), "clip-refine");  // defaults are filled in
  EXPECT_DOUBLE_EQ(job.spec().alpha(), 0.5);
  EXPECT_DOUBLE_EQ(job.spec().weight_decay(), 0.1);

  Watched w = watch(server, job.id());
  ASSERT_TRUE(w.status.ok()) << w.status.error_message();
  expect_consecutive(w.events);
  EXPECT_EQ(states_of(w.events),
            (std::vector<v1::JobState>{v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED}));
  std::vector<int64_t> steps, evals;
  std::string result;
  for (const auto& e : w.events) {
    EXPECT_EQ(e.job_id(), job.id());
    EXPECT_GT(e.unix_ms(), 0);
    if (e.has_step()) {
      steps.push_back(e.step().step());
      EXPECT_EQ(e.step().total_steps(), 6);
      EXPECT_GT(e.step().loss(), 0);
      EXPECT_NEAR(e.step().loss(), e.step().loss_rafa() + e.step().loss_hycd(), 1e-5 * e.step().loss());
      EXPECT_DOUBLE_EQ(e.step().lr(), 1e-4);
      EXPECT_GT(e.step().samples_per_second(), 0);
      EXPECT_GE(e.step().data_seconds(), 0);
    }
    if (e.has_eval()) {
      evals.push_back(e.eval().step());
      for (const char* k : {"modality_gap", "modality_gap_l2", "alignment", "uniformity", "t2i_r1", "i2t_r10", "val_loss"}) {
        EXPECT_TRUE(e.eval().metrics().count(k)) << k;
      }
    }
    if (e.has_result()) result = e.result().model();
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(evals, (std::vector<int64_t>{0, 2, 4, 6}));
  EXPECT_EQ(result, "tiny-aligned@1");

  v1::Job done = get(server, job.id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.step(), 6);
  EXPECT_EQ(done.result_model(), "tiny-aligned@1");
  EXPECT_EQ(done.last_seq(), w.events.back().seq());
  EXPECT_TRUE(done.metrics().count("modality_gap"));

  // The refined model serves at once, and differs from its base.
  auto embed = [&](const std::string& model) {
    v1::EmbedTextRequest req;
    req.set_model(model);
    req.add_texts("a photo of a cat");
    v1::EmbedResponse resp;
    grpc::ClientContext ctx;
    EXPECT_TRUE(server.embedding()->EmbedText(&ctx, req, &resp).ok());
    return resp;
  };
  v1::EmbedResponse refined = embed("tiny-aligned"), base = embed("tiny");
  EXPECT_EQ(refined.model(), "tiny-aligned@1");
  ASSERT_EQ(refined.embeddings().values_size(), base.embeddings().values_size());
  float max_diff = 0;
  for (int i = 0; i < base.embeddings().values_size(); ++i) {
    max_diff = std::max(max_diff, std::abs(refined.embeddings().values(i) - base.embeddings().values(i)));
  }
  EXPECT_GT(max_diff, 1e-6f);

  // Its lineage names the base, data, method, hyper-parameters and metrics.
  v1::GetModelRequest mreq;
  mreq.set_model("tiny-aligned");
  v1::ModelInfo info;
  grpc::ClientContext mctx;
  ASSERT_TRUE(server.models()->GetModel(&mctx, mreq, &info).ok());
  EXPECT_EQ(info.lineage().base_model(), "tiny@1");
  EXPECT_EQ(info.lineage().job_id(), job.id());
  EXPECT_EQ(info.lineage().method(), "clip-refine");
  EXPECT_EQ(info.lineage().data(), spec.data());
  EXPECT_EQ(info.lineage().hyperparameters().at("batch_size"), "2");
  EXPECT_TRUE(info.lineage().metrics().count("modality_gap"));

  // Replay from any sequence number.
  Watched replay = watch(server, job.id(), 4);
  ASSERT_FALSE(replay.events.empty());
  EXPECT_EQ(replay.events.front().seq(), 4);
  expect_consecutive(replay.events, 4);

  // Metrics: jobs by state, and the counters of steps done.
  const std::string text = server.metrics().serialize();
  EXPECT_NE(text.find("refinery_jobs{state=\"SUCCEEDED\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("refinery_job_steps_total 6"), std::string::npos);
}

// HyCD of METHOD.md in float64, for student == teacher (the first step).
double hycd_at_start(const torch::Tensor& fi, const torch::Tensor& ft, double alpha) {
  auto kd = [&](const torch::Tensor& a, const torch::Tensor& b) {
    const int64_t n = a.size(0), d = a.size(1);
    auto A = a.accessor<double, 2>(), B = b.accessor<double, 2>();
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      std::vector<double> s(static_cast<size_t>(n));
      double mx = -1e300;
      for (int64_t j = 0; j < n; ++j) {
        double dot = 0;
        for (int64_t k = 0; k < d; ++k) dot += A[i][k] * B[j][k];
        s[static_cast<size_t>(j)] = dot;
        mx = std::max(mx, dot);
      }
      double z = 0;
      for (double v : s) z += std::exp(v - mx);
      for (int64_t j = 0; j < n; ++j) {
        const double log_p = s[static_cast<size_t>(j)] - mx - std::log(z);
        const double q = alpha * (i == j ? 1.0 : 0.0) + (1 - alpha) * std::exp(log_p);
        if (q > 0) total += q * (std::log(q) - log_p);
      }
    }
    return total / static_cast<double>(n);
  };
  return (kd(fi, ft) + kd(ft, fi)) / 2;
}

TEST(JobService, FirstStepLossesAreTheFormulasOnTheBaseModelsEmbeddings) {
  TempDir dir;
  TestServer server;
  const std::string data = testing::make_coco_caption_set(dir / "data", {8, 1, 0});
  v1::JobSpec spec;
  spec.set_base_model("tiny");
  spec.set_data(data);
  spec.set_batch_size(8);    // the whole set in one batch
  spec.set_val_fraction(0);  // explicitly no validation split
  spec.set_max_steps(1);
  v1::Job job = submit(server, spec);
  EXPECT_EQ(job.total_steps(), 1);
  Watched w = watch(server, job.id());
  ASSERT_TRUE(w.status.ok()) << w.status.error_message();
  const v1::StepEvent* step = nullptr;
  for (const auto& e : w.events) {
    if (e.has_step()) step = &e.step();
  }
  ASSERT_NE(step, nullptr);

  // The base model's own embeddings of the set, computed offline.
  const CaptionDataset set = load_caption_dataset(data);
  std::vector<std::string> paths, captions;
  for (const auto& item : set.items) {
    paths.push_back(item.image_path);
    captions.push_back(item.captions.at(0));
  }
  Embedder base(CheckpointReader::load_model(testing::fixture("tiny.safetensors")), torch::kCPU);
  torch::Tensor fi = base.embed_image_files(paths).to(torch::kFloat64);
  torch::Tensor ft = base.embed_texts(captions).to(torch::kFloat64);

  const double expected_hycd = hycd_at_start(fi, ft, 0.5);
  EXPECT_NEAR(step->loss_hycd(), expected_hycd, 1e-4 * expected_hycd + 1e-6);

  // RaFA's expectation over z ~ N(0, 1): mean(f^2) + 1 per modality; its
  // sampling spread is sqrt((2 + 4 mean f^2) / (B D)) per modality.
  const double mi = fi.pow(2).mean().item<double>(), mt = ft.pow(2).mean().item<double>();
  const double n = static_cast<double>(fi.numel());
  const double expected_rafa = mi + 1 + mt + 1;
  const double spread = std::sqrt((2 + 4 * mi) / n + (2 + 4 * mt) / n);
  EXPECT_NEAR(step->loss_rafa(), expected_rafa, 5 * spread);
  EXPECT_NEAR(step->loss(), step->loss_rafa() + step->loss_hycd(), 1e-5 * step->loss());
}

TEST(JobService, CancelResumeAndDelete) {
  TempDir dir;
  TestServer server;
  v1::JobSpec spec = small_spec(testing::make_coco_caption_set(dir / "data", {8, 1, 0}));
  spec.set_epochs(200);  // far longer than the test waits
  spec.set_checkpoint_every(1000);
  v1::Job job = submit(server, spec);

  // Cancel once it is stepping.
  Watched first = watch(server, job.id(), 0, [](const v1::JobEvent& e) { return e.has_step() && e.step().step() >= 2; });
  v1::CancelJobRequest creq;
  creq.set_id(job.id());
  v1::Job cancelling;
  grpc::ClientContext cctx;
  ASSERT_TRUE(server.jobs()->CancelJob(&cctx, creq, &cancelling).ok());
  EXPECT_TRUE(cancelling.state() == v1::JOB_STATE_CANCELLING || cancelling.state() == v1::JOB_STATE_CANCELLED);
  Watched rest = watch(server, job.id(), first.events.back().seq() + 1);
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  auto states = states_of(rest.events);
  ASSERT_GE(states.size(), 2u);
  EXPECT_EQ(states[states.size() - 2], v1::JOB_STATE_CANCELLING);
  EXPECT_EQ(states.back(), v1::JOB_STATE_CANCELLED);
  v1::Job cancelled = get(server, job.id());
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);
  const int64_t stopped_at = cancelled.step();
  EXPECT_GE(stopped_at, 2);

  // A finished job cannot be cancelled again.
  grpc::ClientContext c2;
  v1::Job again;
  EXPECT_EQ(server.jobs()->CancelJob(&c2, creq, &again).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // Resume continues from the checkpoint written at cancel time.
  v1::ResumeJobRequest rreq;
  rreq.set_id(job.id());
  v1::Job resumed;
  grpc::ClientContext rctx;
  ASSERT_TRUE(server.jobs()->ResumeJob(&rctx, rreq, &resumed).ok());
  EXPECT_EQ(resumed.state(), v1::JOB_STATE_QUEUED);
  Watched after = watch(server, job.id(), cancelled.last_seq() + 1, [](const v1::JobEvent& e) { return e.has_step(); });
  ASSERT_FALSE(after.events.empty());
  ASSERT_TRUE(after.events.back().has_step());
  EXPECT_EQ(after.events.back().step().step(), stopped_at + 1);

  // A running job cannot be deleted; a cancelled one can.
  v1::DeleteJobRequest dreq;
  dreq.set_id(job.id());
  v1::DeleteJobResponse dresp;
  grpc::ClientContext d1;
  EXPECT_EQ(server.jobs()->DeleteJob(&d1, dreq, &dresp).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  grpc::ClientContext c3;
  ASSERT_TRUE(server.jobs()->CancelJob(&c3, creq, &again).ok());
  watch(server, job.id(), 0);  // until it ends
  grpc::ClientContext d2;
  ASSERT_TRUE(server.jobs()->DeleteJob(&d2, dreq, &dresp).ok());
  v1::GetJobRequest greq;
  greq.set_id(job.id());
  grpc::ClientContext g;
  v1::Job gone;
  EXPECT_EQ(server.jobs()->GetJob(&g, greq, &gone).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_FALSE(std::filesystem::exists(server.data_dir() + "/jobs/" + job.id()));
}

TEST(JobService, SubmitIsIdempotentOnTheClientRequestId) {
  TempDir dir;
  TestServer server;
  v1::JobSpec spec = small_spec(testing::make_coco_caption_set(dir / "data", {8, 1, 0}));
  spec.set_max_steps(1);
  v1::Job a = submit(server, spec, nullptr, "req-1");
  v1::Job b = submit(server, spec, nullptr, "req-1");
  v1::Job c = submit(server, spec, nullptr, "req-2");
  EXPECT_EQ(a.id(), b.id());
  EXPECT_NE(a.id(), c.id());
  v1::ListJobsRequest lreq;
  v1::ListJobsResponse list;
  grpc::ClientContext ctx;
  ASSERT_TRUE(server.jobs()->ListJobs(&ctx, lreq, &list).ok());
  EXPECT_EQ(list.jobs_size(), 2);
  watch(server, c.id());
}

TEST(JobService, AJobInterruptedByAServerRestartResumesWithItsHistory) {
  TempDir dir;
  const std::string data_dir = dir / "server-data";
  v1::JobSpec spec = small_spec(testing::make_coco_caption_set(dir / "data", {8, 1, 0}));
  spec.set_epochs(4);  // 12 steps
  std::string id;
  int64_t seen = 0;
  {
    TestServer server({}, data_dir);
    id = submit(server, spec).id();
    Watched w = watch(server, id, 0, [](const v1::JobEvent& e) { return e.has_step() && e.step().step() >= 3; });
    seen = w.events.back().seq();
  }  // shutdown: the trainer checkpoints where it is
  TestServer server({}, data_dir);
  Watched w = watch(server, id);
  ASSERT_TRUE(w.status.ok()) << w.status.error_message();
  expect_consecutive(w.events);
  EXPECT_GT(static_cast<int64_t>(w.events.size()), seen);
  std::vector<int64_t> steps;
  for (const auto& e : w.events) {
    if (e.has_step()) steps.push_back(e.step().step());
  }
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(steps.back(), 12);
  // Every step appears, in order; a step redone after the restart would
  // repeat its number, never skip one.
  for (size_t i = 1; i < steps.size(); ++i) EXPECT_LE(steps[i], steps[i - 1] + 1);
  EXPECT_EQ(states_of(w.events).back(), v1::JOB_STATE_SUCCEEDED);
  bool requeued = false;
  for (const auto& e : w.events) {
    if (e.has_state() && e.state().message().find("restarted") != std::string::npos) requeued = true;
  }
  EXPECT_TRUE(requeued);
}

// Models taken at the end of epochs: stopped by a server shutdown right as
// epoch 1's model is being evaluated, the job resumes after the restart and
// ends with one model per listed epoch, each evaluated, none registered twice.
TEST(JobService, EpochModelsSurviveARestartDuringTheirEvaluation) {
  TempDir dir;
  const std::string data_dir = dir / "server-data";
  const std::string data = testing::make_coco_caption_set(dir / "data", {8, 1, 0});
  v1::JobSpec spec = small_spec(data);
  spec.set_epochs(3);  // 3 steps each
  spec.add_eval_at_epochs(2);
  spec.add_eval_at_epochs(1);
  spec.set_eval_suite(
      nlohmann::json({{"name", "r"}, {"tasks", {{{"name", "captions"}, {"kind", "retrieval"}, {"data", data}}}}}).dump());
  std::string id;
  {
    TestServer server({}, data_dir);
    const v1::Job job = submit(server, spec);
    id = job.id();
    EXPECT_EQ(std::vector<int32_t>(job.spec().eval_at_epochs().begin(), job.spec().eval_at_epochs().end()),
              (std::vector<int32_t>{1, 2}));
    watch(server, id, 0, [](const v1::JobEvent& e) {
      return e.has_eval_progress() && e.eval_progress().phase() == "epoch 1";
    });
  }  // shutdown while (or just after) epoch 1's model is evaluated
  TestServer server({}, data_dir);
  Watched w = watch(server, id);
  ASSERT_TRUE(w.status.ok()) << w.status.error_message();
  const v1::Job done = get(server, id);
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error();
  ASSERT_EQ(done.epoch_results_size(), 2);
  for (int i = 0; i < 2; ++i) {
    const v1::EpochResult& r = done.epoch_results(i);
    EXPECT_EQ(r.epoch(), i + 1);
    EXPECT_EQ(r.step(), 3 * (i + 1));
    EXPECT_EQ(r.model(), "tiny-refined-epoch-" + std::to_string(i + 1) + "@1");
    EXPECT_TRUE(r.has_eval_report());
    EXPECT_EQ(r.eval_report().model(), r.model());
    v1::GetModelRequest mreq;
    mreq.set_model("tiny-refined-epoch-" + std::to_string(i + 1));
    v1::ModelInfo info;
    grpc::ClientContext mctx;
    ASSERT_TRUE(server.models()->GetModel(&mctx, mreq, &info).ok());
    EXPECT_EQ(info.lineage().hyperparameters().at("epochs"), std::to_string(i + 1));
    EXPECT_EQ(info.lineage().job_id(), id);
  }
  EXPECT_EQ(done.result_model(), "tiny-refined@1");
  v1::ListModelsRequest lreq;
  v1::ListModelsResponse models;
  grpc::ClientContext lctx;
  ASSERT_TRUE(server.models()->ListModels(&lctx, lreq, &models).ok());
  int epoch_models = 0;
  for (const auto& m : models.models()) epoch_models += m.name().find("-epoch-") != std::string::npos;
  EXPECT_EQ(epoch_models, 2);  // one version each
}

// Cancel and resume race the runner picking jobs up and finishing them:
// whatever interleaving happens, every job ends in a state its own events
// lead to by allowed steps (never RUNNING after CANCELLED, never left
// CANCELLING), and the stored state is the last one its watchers saw.
TEST(JobService, CancelAndResumeRacingTheRunnerKeepEveryJobConsistent) {
  TempDir dir;
  TestServer server;
  v1::JobSpec spec = small_spec(testing::make_coco_caption_set(dir / "data", {8, 1, 0}));
  spec.set_max_steps(1);
  spec.set_val_fraction(0);
  std::vector<std::string> ids;
  for (int i = 0; i < 16; ++i) {
    spec.set_name("race-" + std::to_string(i));
    ids.push_back(submit(server, spec).id());
  }
  auto call = [&](bool cancel, const std::string& id) {
    grpc::ClientContext ctx;
    v1::Job out;
    if (cancel) {
      v1::CancelJobRequest req;
      req.set_id(id);
      return server.jobs()->CancelJob(&ctx, req, &out);
    }
    v1::ResumeJobRequest req;
    req.set_id(id);
    return server.jobs()->ResumeJob(&ctx, req, &out);
  };
  // Two cancellers and a resumer, each sweeping over the jobs while the
  // runner works through them; refusals (already ended, not resumable) are
  // expected and must be FAILED_PRECONDITION.
  std::atomic<int> unexpected{0};
  auto worker = [&](bool cancel, int rounds, int offset) {
    for (int r = 0; r < rounds; ++r) {
      for (size_t i = 0; i < ids.size(); ++i) {
        const grpc::Status st = call(cancel, ids[(i + static_cast<size_t>(offset)) % ids.size()]);
        if (!st.ok() && st.error_code() != grpc::StatusCode::FAILED_PRECONDITION) ++unexpected;
        std::this_thread::sleep_for(std::chrono::milliseconds(3 + (i * 7 + static_cast<size_t>(r)) % 11));
      }
    }
  };
  std::thread c1(worker, true, 3, 0), c2(worker, true, 3, 5), r1(worker, false, 3, 2);
  c1.join();
  c2.join();
  r1.join();
  EXPECT_EQ(unexpected.load(), 0);
  using S = v1::JobState;
  const std::map<S, std::set<S>> allowed = {
      {v1::JOB_STATE_QUEUED, {v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLED}},
      {v1::JOB_STATE_RUNNING,
       {v1::JOB_STATE_CANCELLING, v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED}},
      {v1::JOB_STATE_CANCELLING, {v1::JOB_STATE_CANCELLED, v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED}},
      {v1::JOB_STATE_CANCELLED, {v1::JOB_STATE_QUEUED}},
      {v1::JOB_STATE_FAILED, {v1::JOB_STATE_QUEUED}},
      {v1::JOB_STATE_SUCCEEDED, {}},
  };
  for (const auto& id : ids) {
    Watched w = watch(server, id);  // until it ends
    ASSERT_TRUE(w.status.ok()) << w.status.error_message();
    const std::vector<v1::JobState> states = states_of(w.events);
    ASSERT_FALSE(states.empty());
    EXPECT_EQ(states.front(), v1::JOB_STATE_QUEUED) << id;
    for (size_t i = 1; i < states.size(); ++i) {
      EXPECT_TRUE(allowed.at(states[i - 1]).count(states[i]))
          << id << ": " << v1::JobState_Name(states[i - 1]) << " -> " << v1::JobState_Name(states[i]);
    }
    const v1::Job job = get(server, id);
    EXPECT_EQ(job.state(), states.back()) << id;
    EXPECT_TRUE(job.state() == v1::JOB_STATE_SUCCEEDED || job.state() == v1::JOB_STATE_CANCELLED)
        << id << " " << v1::JobState_Name(job.state());
  }
}

TEST(JobService, BadSpecsAreRejectedNamingTheCulprit) {
  TempDir dir;
  TestServer server;
  const std::string good = testing::make_coco_caption_set(dir / "data", {8, 1, 0});
  struct Case {
    std::function<void(v1::JobSpec&)> change;
    grpc::StatusCode code;
    std::string mentions;
  };
  const std::vector<Case> cases = {
      {[](v1::JobSpec& s) { s.clear_base_model(); }, grpc::StatusCode::INVALID_ARGUMENT, "base_model"},
      {[](v1::JobSpec& s) { s.set_base_model("nope"); }, grpc::StatusCode::NOT_FOUND, "nope"},
      {[&](v1::JobSpec& s) { s.set_data("coco:" + dir.path() + "/missing.json:" + dir.path()); },
       grpc::StatusCode::INVALID_ARGUMENT, "missing.json"},
      {[&](v1::JobSpec& s) { s.set_data("parquet:" + dir.path() + "/x"); }, grpc::StatusCode::INVALID_ARGUMENT, "parquet"},
      {[](v1::JobSpec& s) { s.set_method("magic"); }, grpc::StatusCode::INVALID_ARGUMENT, "magic"},
      {[](v1::JobSpec& s) { s.set_batch_size(64); }, grpc::StatusCode::INVALID_ARGUMENT, "batch_size"},
      {[](v1::JobSpec& s) { s.set_alpha(1.5); }, grpc::StatusCode::INVALID_ARGUMENT, "alpha"},
      {[](v1::JobSpec& s) { (*s.mutable_extra())["colour"] = "blue"; }, grpc::StatusCode::INVALID_ARGUMENT, "colour"},
      {[](v1::JobSpec& s) { s.set_schedule("zigzag"); }, grpc::StatusCode::INVALID_ARGUMENT, "zigzag"},
      {[](v1::JobSpec& s) { s.set_init("pretrained"); }, grpc::StatusCode::INVALID_ARGUMENT, "pretrained"},
      {[](v1::JobSpec& s) { s.set_init("random"); }, grpc::StatusCode::INVALID_ARGUMENT, "base_model"},
      {[](v1::JobSpec& s) {
         s.clear_base_model();
         s.set_init("random");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "arch"},
      {[](v1::JobSpec& s) {
         s.clear_base_model();
         s.set_init("random");
         s.set_arch("ViT-Z-99");
       },
       grpc::StatusCode::NOT_FOUND, "ViT-Z-99"},
      {[](v1::JobSpec& s) {
         s.clear_base_model();
         s.set_init("random");
         s.set_arch("tiny");
         s.set_method("clip-refine");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "contrastive"},
      {[](v1::JobSpec& s) { s.set_arch("tiny"); }, grpc::StatusCode::INVALID_ARGUMENT, "arch"},
      {[](v1::JobSpec& s) {
         s.set_epochs(3);
         s.add_eval_at_epochs(2);
         s.add_eval_at_epochs(2);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "epoch 2 twice"},
      {[](v1::JobSpec& s) {
         s.set_epochs(3);
         s.add_eval_at_epochs(3);  // the last epoch's model is the result
       },
       grpc::StatusCode::INVALID_ARGUMENT, "epoch 3 does not end before"},
      {[](v1::JobSpec& s) {
         s.set_epochs(3);
         s.add_eval_at_epochs(0);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "epoch 0"},
  };
  for (const auto& c : cases) {
    v1::JobSpec spec = small_spec(good);
    c.change(spec);
    grpc::Status status;
    submit(server, spec, &status);
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_NE(status.error_message().find(c.mentions), std::string::npos) << status.error_message();
  }
  v1::ListJobsRequest lreq;
  v1::ListJobsResponse list;
  grpc::ClientContext ctx;
  ASSERT_TRUE(server.jobs()->ListJobs(&ctx, lreq, &list).ok());
  EXPECT_EQ(list.jobs_size(), 0);  // nothing half-created
}

}  // namespace
}  // namespace refinery
