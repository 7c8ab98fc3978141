// Sweeps through the real JobService: a 2 x 2 grid queues four refine jobs
// at once, each with its point's values and its own model name, the base
// evaluated once and reused; bad grids and bad points are refused naming
// them with nothing queued; cancel stops every job; submit is idempotent.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "server/job_rpc.h"
#include "server/test_server.h"
#include "support/caption_fixture.h"

namespace refinery {
namespace {

using nlohmann::json;
using testing::TempDir;
using testing::TestServer;
using testing::watch_all;

grpc::Status submit_sweep(TestServer& server, const v1::SweepSpec& spec, v1::Sweep* sweep,
                          const std::string& request_id = "") {
  v1::SubmitSweepRequest req;
  *req.mutable_spec() = spec;
  req.set_client_request_id(request_id);
  grpc::ClientContext ctx;
  return server.jobs()->SubmitSweep(&ctx, req, sweep);
}

v1::Sweep get_sweep(TestServer& server, const std::string& id) {
  v1::GetSweepRequest req;
  req.set_id(id);
  v1::Sweep sweep;
  grpc::ClientContext ctx;
  EXPECT_TRUE(server.jobs()->GetSweep(&ctx, req, &sweep).ok());
  return sweep;
}

// The sum of the /metrics samples whose line starts with `prefix`, and how
// many there are.
std::pair<double, int> samples(TestServer& server, const std::string& prefix) {
  std::istringstream text(server.metrics().serialize());
  double sum = 0;
  int n = 0;
  for (std::string line; std::getline(text, line);) {
    if (line.rfind(prefix, 0) != 0) continue;
    sum += std::stod(line.substr(line.rfind(' ') + 1));
    ++n;
  }
  return {sum, n};
}

v1::SweepSpec grid(const std::string& data, const std::string& suite) {
  v1::SweepSpec s;
  v1::JobSpec& job = *s.mutable_job();
  job.set_base_model("tiny");
  job.set_data(data);
  job.set_batch_size(2);
  job.set_val_fraction(0.25);
  job.set_max_steps(2);
  job.set_lr(1e-4);
  job.set_eval_suite(suite);
  auto* a = s.add_axes();
  a->set_field("lambda_rafa");
  a->add_values("0.5");
  a->add_values("1");
  auto* b = s.add_axes();
  b->set_field("alpha");
  b->add_values("0.2");
  b->add_values("0.8");
  return s;
}

size_t job_count(TestServer& server) {
  v1::ListJobsRequest req;
  v1::ListJobsResponse list;
  grpc::ClientContext ctx;
  EXPECT_TRUE(server.jobs()->ListJobs(&ctx, req, &list).ok());
  return static_cast<size_t>(list.jobs_size());
}

TEST(Sweep, ATwoByTwoGridRunsFourJobsAndEvaluatesTheBaseOnce) {
  TempDir dir;
  TestServer server;
  const std::string data = testing::make_coco_caption_set(dir / "data", {8, 2, 0});
  const json suite = {{"name", "r"}, {"tasks", {{{"name", "captions"}, {"kind", "retrieval"}, {"data", data}}}}};
  v1::Sweep sweep;
  ASSERT_TRUE(submit_sweep(server, grid(data, suite.dump()), &sweep).ok());
  EXPECT_EQ(sweep.spec().name(), "lambda_rafa x alpha");
  ASSERT_EQ(sweep.points_size(), 4);
  // On /metrics at once: one running sweep, its four jobs by state.
  const std::string jobs_of_sweep = "refinery_sweep_jobs{";
  const std::string sweep_label = "sweep_id=\"" + sweep.id() + "\"}";
  EXPECT_EQ(samples(server, "refinery_sweeps{state=\"running\"}").first, 1);
  EXPECT_EQ(samples(server, "refinery_sweeps{state=\"finished\"}").first, 0);
  EXPECT_EQ(samples(server, jobs_of_sweep).second, 6);  // every state, 0s included
  EXPECT_EQ(samples(server, jobs_of_sweep).first, 4);
  EXPECT_EQ(samples(server, "refinery_sweep_jobs{state=\"SUCCEEDED\"," + sweep_label).first, 0);
  ASSERT_EQ(sweep.jobs_size(), 4);
  const std::vector<std::pair<std::string, std::string>> expected = {{"0.5", "0.2"}, {"0.5", "0.8"}, {"1", "0.2"}, {"1", "0.8"}};
  for (int i = 0; i < 4; ++i) {
    const auto& p = sweep.points(i);
    EXPECT_EQ(p.values().at("lambda_rafa"), expected[i].first);
    EXPECT_EQ(p.values().at("alpha"), expected[i].second);
    const v1::Job& job = sweep.jobs(i);
    EXPECT_EQ(job.id(), p.job_id());
    // The runner may have started the first one already.
    EXPECT_TRUE(job.state() == v1::JOB_STATE_QUEUED || (i == 0 && job.state() == v1::JOB_STATE_RUNNING))
        << v1::JobState_Name(job.state());
    EXPECT_DOUBLE_EQ(job.spec().lambda_rafa(), std::stod(expected[i].first));
    EXPECT_DOUBLE_EQ(job.spec().alpha(), std::stod(expected[i].second));
    EXPECT_EQ(job.spec().name(), "tiny-refined-lambda_rafa-" + expected[i].first + "-alpha-" + expected[i].second);
  }
  int base_evaluations = 0;
  for (const auto& p : sweep.points()) {
    for (const auto& e : watch_all(server, p.job_id())) {
      if (e.has_eval_task() && e.eval_task().phase() == "base") ++base_evaluations;
    }
  }
  EXPECT_EQ(base_evaluations, 1);  // the first job measured it; the others took its report
  // Ended: the sweep counts as finished and its per-sweep series are gone
  // (the last job's state reaches /metrics just after its last event).
  for (int i = 0; i < 100 && samples(server, "refinery_sweeps{state=\"running\"}").first != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(samples(server, "refinery_sweeps{state=\"running\"}").first, 0);
  EXPECT_EQ(samples(server, "refinery_sweeps{state=\"finished\"}").first, 1);
  EXPECT_EQ(samples(server, jobs_of_sweep).second, 0) << server.metrics().serialize();
  const v1::Sweep done = get_sweep(server, sweep.id());
  for (const auto& job : done.jobs()) {
    EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED) << job.error();
    EXPECT_EQ(job.base_eval_report().model(), "tiny@1");
    EXPECT_EQ(job.eval_report().model(), job.spec().name() + "@1");
    EXPECT_EQ(job.base_eval_report().suite_digest(), job.eval_report().suite_digest());
  }
  // Listed, and a retried submit returns the same sweep.
  v1::ListSweepsRequest lreq;
  v1::ListSweepsResponse list;
  grpc::ClientContext lctx;
  ASSERT_TRUE(server.jobs()->ListSweeps(&lctx, lreq, &list).ok());
  ASSERT_EQ(list.sweeps_size(), 1);
  EXPECT_EQ(list.sweeps(0).jobs_size(), 4);
}

v1::SweepSpec epochs_grid(const std::string& data, const std::string& suite, const std::vector<std::string>& epochs) {
  v1::SweepSpec s = grid(data, suite);
  s.mutable_job()->clear_max_steps();
  s.clear_axes();
  auto* a = s.add_axes();
  a->set_field("epochs");
  for (const auto& e : epochs) a->add_values(e);
  return s;
}

// With the constant schedule the model at the end of epoch E of a longer run
// is the model of an E-epoch run: the sweep runs one job, and each smaller
// point's model evaluates as a separate run of that many epochs does.
TEST(Sweep, AnEpochsSweepRunsOnceAndItsEpochModelsAreThoseOfShorterRuns) {
  TempDir dir;
  TestServer server;
  const std::string data = testing::make_coco_caption_set(dir / "data", {8, 2, 0});
  const json suite = {{"name", "r"}, {"tasks", {{{"name", "captions"}, {"kind", "retrieval"}, {"data", data}}}}};
  v1::Sweep sweep;
  ASSERT_TRUE(submit_sweep(server, epochs_grid(data, suite.dump(), {"2", "1", "3"}), &sweep).ok());
  ASSERT_EQ(sweep.points_size(), 3);
  ASSERT_EQ(sweep.jobs_size(), 1);
  const v1::Job& job = sweep.jobs(0);
  EXPECT_EQ(job.spec().epochs(), 3);
  EXPECT_EQ(std::vector<int32_t>(job.spec().eval_at_epochs().begin(), job.spec().eval_at_epochs().end()),
            (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(job.spec().name(), "tiny-refined");
  const std::vector<std::pair<std::string, int32_t>> expected = {{"2", 2}, {"1", 1}, {"3", 0}};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(sweep.points(i).values().at("epochs"), expected[i].first);
    EXPECT_EQ(sweep.points(i).job_id(), job.id());
    EXPECT_EQ(sweep.points(i).epoch(), expected[i].second);
  }
  std::vector<std::string> phases;
  for (const auto& e : watch_all(server, job.id())) {
    if (e.has_eval_task()) phases.push_back(e.eval_task().phase());
  }
  EXPECT_EQ(phases, (std::vector<std::string>{"base", "epoch 1", "epoch 2", "result"}));
  const v1::Sweep done = get_sweep(server, sweep.id());
  ASSERT_EQ(done.jobs(0).state(), v1::JOB_STATE_SUCCEEDED) << done.jobs(0).error();
  ASSERT_EQ(done.jobs(0).epoch_results_size(), 2);
  const v1::EpochResult& two = done.jobs(0).epoch_results(1);
  EXPECT_EQ(two.model(), "tiny-refined-epoch-2@1");

  // A separate run of 2 epochs: the same model, so the same evaluation.
  v1::JobSpec alone = epochs_grid(data, suite.dump(), {}).job();
  alone.set_epochs(2);
  alone.set_name("tiny-two-epochs");
  v1::SubmitJobRequest req;
  *req.mutable_spec() = alone;
  v1::Job separate;
  grpc::ClientContext ctx;
  ASSERT_TRUE(server.jobs()->SubmitJob(&ctx, req, &separate).ok());
  watch_all(server, separate.id());
  v1::GetJobRequest greq;
  greq.set_id(separate.id());
  grpc::ClientContext gctx;
  ASSERT_TRUE(server.jobs()->GetJob(&gctx, greq, &separate).ok());
  ASSERT_EQ(separate.state(), v1::JOB_STATE_SUCCEEDED) << separate.error();
  const auto& a = two.eval_report().tasks(0).metrics();
  const auto& b = separate.eval_report().tasks(0).metrics();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : b) {
    ASSERT_TRUE(a.count(k)) << k;
    EXPECT_NEAR(a.at(k), v, 1e-6) << k;
  }
  EXPECT_GT(b.at("alignment"), 0);  // a continuous metric, not only ranks
}

// The cosine schedule ends at the run's last step, so an epochs sweep under
// it needs a run per point; with another axis, one run per value of it.
TEST(Sweep, AnEpochsSweepRunsPerPointWhenTheScheduleDependsOnTheLength) {
  TempDir dir;
  TestServer server;
  const std::string data = testing::make_coco_caption_set(dir / "data", {8, 1, 0});
  v1::SweepSpec cosine = epochs_grid(data, "", {"1", "2"});
  cosine.mutable_job()->set_schedule("cosine");
  v1::Sweep a;
  ASSERT_TRUE(submit_sweep(server, cosine, &a).ok());
  EXPECT_EQ(a.jobs_size(), 2);
  for (const auto& p : a.points()) EXPECT_EQ(p.epoch(), 0);
  EXPECT_EQ(a.jobs(1).spec().name(), "tiny-refined-epochs-2");

  v1::SweepSpec two_axes = epochs_grid(data, "", {"1", "2"});
  two_axes.mutable_job()->set_name("two");
  auto* lr = two_axes.add_axes();
  lr->set_field("lr");
  lr->add_values("1e-4");
  lr->add_values("2e-4");
  v1::Sweep b;
  ASSERT_TRUE(submit_sweep(server, two_axes, &b).ok());
  ASSERT_EQ(b.points_size(), 4);
  ASSERT_EQ(b.jobs_size(), 2);
  EXPECT_EQ(b.jobs(0).spec().name(), "two-lr-1e-4");
  EXPECT_EQ(b.jobs(1).spec().name(), "two-lr-2e-4");
  EXPECT_EQ(b.points(0).job_id(), b.points(2).job_id());  // epochs 1 and 2 at lr 1e-4
  EXPECT_EQ(b.points(0).epoch(), 1);
  EXPECT_EQ(b.points(2).epoch(), 0);
  for (const auto& s : {a.id(), b.id()}) {
    v1::CancelSweepRequest creq;
    creq.set_id(s);
    v1::Sweep cancelled;
    grpc::ClientContext cctx;
    ASSERT_TRUE(server.jobs()->CancelSweep(&cctx, creq, &cancelled).ok());
  }
}

TEST(Sweep, SubmitIsIdempotentAndCancelStopsEveryJob) {
  TempDir dir;
  TestServer server;
  const std::string data = testing::make_coco_caption_set(dir / "data", {8, 1, 0});
  v1::SweepSpec spec = grid(data, "");
  spec.mutable_job()->clear_max_steps();
  spec.mutable_job()->set_epochs(500);
  spec.mutable_job()->set_checkpoint_every(100000);
  v1::Sweep a, b;
  ASSERT_TRUE(submit_sweep(server, spec, &a, "sweep-req-1").ok());
  ASSERT_TRUE(submit_sweep(server, spec, &b, "sweep-req-1").ok());
  EXPECT_EQ(a.id(), b.id());
  EXPECT_EQ(job_count(server), 4u);
  v1::CancelSweepRequest creq;
  creq.set_id(a.id());
  v1::Sweep cancelled;
  grpc::ClientContext cctx;
  ASSERT_TRUE(server.jobs()->CancelSweep(&cctx, creq, &cancelled).ok());
  for (const auto& p : a.points()) watch_all(server, p.job_id());  // until each has ended
  const v1::Sweep after = get_sweep(server, a.id());
  ASSERT_EQ(after.jobs_size(), 4);
  for (const auto& job : after.jobs()) EXPECT_EQ(job.state(), v1::JOB_STATE_CANCELLED);
}

TEST(Sweep, BadGridsAndPointsAreRefusedNamingThemWithNothingQueued) {
  TempDir dir;
  TestServer server;
  const std::string data = testing::make_coco_caption_set(dir / "data", {8, 1, 0});
  struct Case {
    std::function<void(v1::SweepSpec&)> change;
    std::string mentions;
  };
  const std::vector<Case> cases = {
      {[](v1::SweepSpec& s) { s.clear_axes(); }, "at least one axis"},
      {[](v1::SweepSpec& s) { s.mutable_axes(0)->set_field("colour"); }, "'colour'"},
      {[](v1::SweepSpec& s) { s.mutable_axes(0)->set_field("data"); }, "'data' cannot vary"},
      {[](v1::SweepSpec& s) { s.mutable_axes(1)->set_field("lambda_rafa"); }, "given twice"},
      {[](v1::SweepSpec& s) { s.mutable_axes(0)->set_values(1, "lots"); }, "'lots' is not a valid double"},
      {[](v1::SweepSpec& s) { s.mutable_axes(0)->set_values(1, "0.5"); }, "repeats value '0.5'"},
      {[](v1::SweepSpec& s) { s.mutable_axes(1)->set_values(1, "1.5"); }, "sweep point lambda_rafa=0.5, alpha=1.5"},
  };
  for (const auto& c : cases) {
    v1::SweepSpec spec = grid(data, "");
    c.change(spec);
    v1::Sweep sweep;
    const grpc::Status status = submit_sweep(server, spec, &sweep);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_NE(status.error_message().find(c.mentions), std::string::npos) << status.error_message();
  }
  EXPECT_EQ(job_count(server), 0u);
  v1::ListSweepsRequest lreq;
  v1::ListSweepsResponse list;
  grpc::ClientContext lctx;
  ASSERT_TRUE(server.jobs()->ListSweeps(&lctx, lreq, &list).ok());
  EXPECT_EQ(list.sweeps_size(), 0);
}

}  // namespace
}  // namespace refinery
