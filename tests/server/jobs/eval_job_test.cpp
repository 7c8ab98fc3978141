// Evaluation jobs through the real JobService on an in-process server: an
// eval job streams progress and per-task events and stores its report with
// the job and in the model's lineage, with the numbers an offline run of the
// same suite gives; cancel stops a running evaluation; a refine job with a
// suite evaluates its base before the first step and its result at the end,
// and the refined model's lineage holds both (persisted across a restart);
// bad suites are rejected at submit naming the item, creating no job.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint_reader.h"
#include "core/embedding/embedder.h"
#include "core/eval/eval_suite.h"
#include "server/job_rpc.h"
#include "server/test_server.h"
#include "support/caption_fixture.h"

namespace refinery {
namespace {

using nlohmann::json;
using testing::TempDir;
using testing::TestServer;
using testing::get;
using testing::states_of;
using testing::watch_all;

grpc::Status try_submit(TestServer& server, const v1::JobSpec& spec, v1::Job* job) {
  v1::SubmitJobRequest req;
  *req.mutable_spec() = spec;
  grpc::ClientContext ctx;
  return server.jobs()->SubmitJob(&ctx, req, job);
}

v1::ModelInfo model_info(TestServer& server, const std::string& ref) {
  v1::GetModelRequest req;
  req.set_model(ref);
  v1::ModelInfo info;
  grpc::ClientContext ctx;
  EXPECT_TRUE(server.models()->GetModel(&ctx, req, &info).ok());
  return info;
}

// Three classes of the fixture's images: folder:<dir>/classes.
std::string make_class_folders(const std::string& dir) {
  const std::string root = dir + "/classes";
  ::mkdir(dir.c_str(), 0755);
  ::mkdir(root.c_str(), 0755);
  const std::vector<std::pair<std::string, std::vector<std::string>>> classes = {
      {"astronaut", {"astronaut.png", "rocket.jpg"}},
      {"cat", {"chelsea.png", "transparent.png"}},
      {"coffee_cup", {"coffee.png", "camera.png", "logo.png"}}};
  for (const auto& [name, images] : classes) {
    ::mkdir((root + "/" + name).c_str(), 0755);
    for (const auto& image : images) {
      testing::write_file(root + "/" + name + "/" + image, testing::read_file(testing::fixture("images/" + image)));
    }
  }
  return "folder:" + root;
}

json two_task_suite(const std::string& classes, const std::string& captions) {
  return {{"name", "small"},
          {"tasks",
           {{{"name", "objects"}, {"kind", "zeroshot"}, {"data", classes}},
            {{"name", "captions"}, {"kind", "retrieval"}, {"data", captions}}}}};
}

v1::JobSpec eval_spec(const std::string& model, const json& suite) {
  v1::JobSpec spec;
  spec.set_kind(v1::JOB_KIND_EVAL);
  spec.set_model(model);
  spec.set_eval_suite(suite.dump());
  return spec;
}

TEST(EvalJob, StreamsProgressAndStoresTheReportOfTheOfflineRun) {
  TempDir dir;
  TestServer server;
  const json suite = two_task_suite(make_class_folders(dir / "cls"),
                                    testing::make_coco_caption_set(dir / "caps", {6, 3, 0}));
  v1::Job job;
  ASSERT_TRUE(try_submit(server, eval_spec("tiny", suite), &job).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.kind(), v1::JOB_KIND_EVAL);
  EXPECT_EQ(job.spec().model(), "tiny@1");  // resolved at submit
  // Items: 7 images + 3 prompts, then 18 captions + 6 images.
  EXPECT_EQ(job.total_steps(), 7 + 3 + 18 + 6);

  const auto events = watch_all(server, job.id());
  EXPECT_EQ(states_of(events),
            (std::vector<v1::JobState>{v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED}));
  std::vector<std::string> tasks;
  int64_t last_done = 0;
  int progress = 0;
  for (const auto& e : events) {
    if (e.has_eval_progress()) {
      ++progress;
      EXPECT_EQ(e.eval_progress().model(), "tiny@1");
      EXPECT_EQ(e.eval_progress().phase(), "eval");
      EXPECT_EQ(e.eval_progress().total(), 34);
      EXPECT_GE(e.eval_progress().done(), last_done);
      last_done = e.eval_progress().done();
    }
    if (e.has_eval_task()) tasks.push_back(e.eval_task().result().name());
  }
  EXPECT_GE(progress, 1);
  EXPECT_EQ(last_done, 34);  // the last batch is always reported
  EXPECT_EQ(tasks, (std::vector<std::string>{"objects", "captions"}));

  // The same suite run offline on the fixture model gives the same numbers.
  const PreparedEvalSuite prepared = prepare_eval_suite(parse_eval_suite(suite));
  Embedder embedder(CheckpointReader::load_model(testing::fixture("tiny.safetensors")), torch::kCPU);
  const EvalReport offline = run_eval_suite(prepared, embedder);

  const v1::Job done = get(server, job.id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.step(), 34);
  const v1::EvalReport& report = done.eval_report();
  EXPECT_EQ(report.suite(), "small");
  EXPECT_EQ(report.model(), "tiny@1");
  EXPECT_EQ(report.job_id(), job.id());
  ASSERT_EQ(report.tasks_size(), 2);
  for (int t = 0; t < 2; ++t) {
    const auto& task = report.tasks(t);
    EXPECT_EQ(task.name(), offline.tasks[t].name);
    EXPECT_EQ(task.n(), offline.tasks[t].n);
    ASSERT_EQ(static_cast<size_t>(task.metrics_size()), offline.tasks[t].metrics.size());
    for (const auto& [k, v] : offline.tasks[t].metrics) EXPECT_NEAR(task.metrics().at(k), v, 1e-6) << k;
  }
  EXPECT_EQ(report.tasks(0).kind(), "zeroshot");
  EXPECT_EQ(json::parse(report.tasks(0).details_json())["per_class"].size(), 3u);
  EXPECT_NEAR(report.summary().at("mean_zeroshot_top1"), offline.summary.at("mean_zeroshot_top1"), 1e-6);
  EXPECT_NEAR(done.metrics().at("mean_text_to_image_r1"), offline.summary.at("mean_text_to_image_r1"), 1e-6);

  // The model's lineage keeps it as the latest report of the suite.
  const v1::ModelInfo tiny = model_info(server, "tiny");
  ASSERT_EQ(tiny.lineage().evaluations_size(), 1);
  EXPECT_EQ(tiny.lineage().evaluations(0).suite(), "small");
  EXPECT_EQ(tiny.lineage().evaluations(0).job_id(), job.id());
  EXPECT_TRUE(tiny.lineage().evaluations(0).tasks(0).details_json().empty());  // kept with the job only
  EXPECT_TRUE(tiny.lineage().base_model().empty());  // evaluated, not refined

  // A second run of the same suite replaces it.
  v1::Job again;
  ASSERT_TRUE(try_submit(server, eval_spec("tiny", suite), &again).ok());
  watch_all(server, again.id());
  const v1::ModelInfo after = model_info(server, "tiny");
  ASSERT_EQ(after.lineage().evaluations_size(), 1);
  EXPECT_EQ(after.lineage().evaluations(0).job_id(), again.id());

  const std::string text = server.metrics().serialize();
  EXPECT_NE(text.find("refinery_eval_tasks_total{kind=\"zeroshot\"} 2"), std::string::npos) << text;
  EXPECT_NE(text.find("refinery_eval_images_total 26"), std::string::npos) << text;
}

TEST(EvalJob, CancelStopsARunningEvaluation) {
  TempDir dir;
  TestServer server;
  // Enough work that the job is still running when the cancel arrives.
  const std::string classes = make_class_folders(dir / "cls");
  json tasks = json::array();
  for (int i = 0; i < 400; ++i) {
    tasks.push_back({{"name", "t" + std::to_string(i)}, {"kind", "zeroshot"}, {"data", classes}});
  }
  v1::Job job;
  ASSERT_TRUE(try_submit(server, eval_spec("tiny", {{"name", "long"}, {"tasks", tasks}}), &job).ok());
  watch_all(server, job.id(), [](const v1::JobEvent& e) { return e.has_eval_progress(); });
  v1::CancelJobRequest creq;
  creq.set_id(job.id());
  v1::Job cancelling;
  grpc::ClientContext cctx;
  ASSERT_TRUE(server.jobs()->CancelJob(&cctx, creq, &cancelling).ok());
  const auto events = watch_all(server, job.id());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(states_of(events).back(), v1::JOB_STATE_CANCELLED);
  const v1::Job cancelled = get(server, job.id());
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_LT(cancelled.step(), cancelled.total_steps());
  EXPECT_FALSE(cancelled.has_eval_report());
  EXPECT_EQ(model_info(server, "tiny").lineage().evaluations_size(), 0);  // no partial report

  // Resume evaluates again from the start; cancel that too, while queued or running.
  v1::ResumeJobRequest rreq;
  rreq.set_id(job.id());
  v1::Job resumed;
  grpc::ClientContext rctx;
  ASSERT_TRUE(server.jobs()->ResumeJob(&rctx, rreq, &resumed).ok());
  EXPECT_EQ(resumed.state(), v1::JOB_STATE_QUEUED);
  grpc::ClientContext c2;
  ASSERT_TRUE(server.jobs()->CancelJob(&c2, creq, &cancelling).ok());
  watch_all(server, job.id());
  EXPECT_EQ(get(server, job.id()).state(), v1::JOB_STATE_CANCELLED);
}

TEST(EvalJob, ARefineJobEvaluatesItsBaseFirstAndItsResultLast) {
  TempDir dir;
  const std::string data_dir = dir / "server-data";
  const std::string captions = testing::make_coco_caption_set(dir / "caps", {8, 2, 0});
  const json suite = two_task_suite(make_class_folders(dir / "cls"), captions);
  std::string job_id;
  {
    TestServer server({}, data_dir);
    v1::JobSpec spec;
    spec.set_base_model("tiny");
    spec.set_data(captions);
    spec.set_batch_size(2);
    spec.set_val_fraction(0.25);
    spec.set_lr(1e-3);
    spec.set_max_steps(3);
    spec.set_name("tiny-refined");
    spec.set_eval_suite(suite.dump());
    v1::Job job;
    ASSERT_TRUE(try_submit(server, spec, &job).ok());
    EXPECT_EQ(job.kind(), v1::JOB_KIND_REFINE);
    job_id = job.id();
    const auto events = watch_all(server, job.id());
    EXPECT_EQ(states_of(events).back(), v1::JOB_STATE_SUCCEEDED);
    // Order: base tasks, then steps, then the result's tasks.
    std::string order;
    for (const auto& e : events) {
      if (e.has_eval_task()) order += e.eval_task().phase() == "base" ? "B" : e.eval_task().phase() == "result" ? "R" : "?";
      if (e.has_step()) order += "s";
      if (e.has_eval_progress()) {
        EXPECT_EQ(e.eval_progress().model(), e.eval_progress().phase() == "base" ? "tiny@1" : "tiny-refined@1");
      }
    }
    EXPECT_EQ(order, "BBsssRR");
    const v1::Job done = get(server, job.id());
    EXPECT_EQ(done.base_eval_report().model(), "tiny@1");
    EXPECT_EQ(done.eval_report().model(), "tiny-refined@1");
    EXPECT_EQ(done.step(), 3);  // a refine job's steps stay training steps
    // Refining at lr 1e-3 moves the embeddings: the gap changes.
    EXPECT_NE(done.base_eval_report().tasks(1).metrics().at("modality_gap"),
              done.eval_report().tasks(1).metrics().at("modality_gap"));
    // The base model keeps its report too.
    EXPECT_EQ(model_info(server, "tiny").lineage().evaluations(0).job_id(), job.id());
  }
  // The refined model's lineage holds both, across a restart.
  TestServer server({}, data_dir);
  const v1::ModelInfo refined = model_info(server, "tiny-refined");
  EXPECT_EQ(refined.lineage().base_model(), "tiny@1");
  ASSERT_EQ(refined.lineage().base_evaluations_size(), 1);
  ASSERT_EQ(refined.lineage().evaluations_size(), 1);
  EXPECT_EQ(refined.lineage().base_evaluations(0).model(), "tiny@1");
  EXPECT_EQ(refined.lineage().evaluations(0).model(), "tiny-refined@1");
  EXPECT_EQ(refined.lineage().evaluations(0).job_id(), job_id);
  EXPECT_EQ(refined.lineage().evaluations(0).tasks_size(), 2);
}

TEST(EvalJob, BadSuitesAreRejectedAtSubmitNamingTheItem) {
  TempDir dir;
  TestServer server;
  const std::string classes = make_class_folders(dir / "cls");
  const std::string root = classes.substr(std::string("folder:").size());
  // A class folder with no images, and an image file that is not one.
  const std::string empty_class = dir / "empty";
  ::mkdir(empty_class.c_str(), 0755);
  ::mkdir((empty_class + "/cat").c_str(), 0755);
  ::mkdir((empty_class + "/dog").c_str(), 0755);
  testing::write_file(empty_class + "/cat/a.png", testing::read_file(testing::fixture("images/chelsea.png")));
  const std::string broken = dir / "broken";
  ::mkdir(broken.c_str(), 0755);
  ::mkdir((broken + "/cat").c_str(), 0755);
  testing::write_file(broken + "/cat/fake.jpg", "not a picture");
  testing::write_file(broken + "/cat/a.png", testing::read_file(testing::fixture("images/chelsea.png")));

  auto zeroshot = [](const std::string& data, json extra = json::object()) {
    json task = {{"name", "pets"}, {"kind", "zeroshot"}, {"data", data}};
    task.update(extra);
    return json{{"name", "s"}, {"tasks", {task}}};
  };
  struct Case {
    v1::JobSpec spec;
    grpc::StatusCode code;
    std::string mentions;
  };
  v1::JobSpec refine_with_bad_suite;
  refine_with_bad_suite.set_base_model("tiny");
  refine_with_bad_suite.set_data(testing::make_coco_caption_set(dir / "caps", {8, 1, 0}));
  refine_with_bad_suite.set_batch_size(2);
  refine_with_bad_suite.set_eval_suite(zeroshot("folder:" + dir.path() + "/nowhere").dump());
  v1::JobSpec both = eval_spec("tiny", zeroshot(classes));
  both.set_data(classes);
  const std::vector<Case> cases = {
      {eval_spec("tiny", zeroshot("folder:" + dir.path() + "/nowhere")), grpc::StatusCode::INVALID_ARGUMENT, "nowhere"},
      {eval_spec("tiny", zeroshot("folder:" + empty_class)), grpc::StatusCode::INVALID_ARGUMENT, "dog"},
      {eval_spec("tiny", zeroshot(classes, {{"dataset", "NoSuchSet"}})), grpc::StatusCode::NOT_FOUND, "NoSuchSet"},
      {eval_spec("tiny", zeroshot("folder:" + broken)), grpc::StatusCode::INVALID_ARGUMENT, "fake.jpg"},
      {eval_spec("tiny", zeroshot(classes, {{"colour", "red"}})), grpc::StatusCode::INVALID_ARGUMENT, "colour"},
      {eval_spec("nope", zeroshot(classes)), grpc::StatusCode::NOT_FOUND, "nope"},
      {both, grpc::StatusCode::INVALID_ARGUMENT, "base_model and data"},
      {refine_with_bad_suite, grpc::StatusCode::INVALID_ARGUMENT, "nowhere"},
  };
  for (const auto& c : cases) {
    v1::Job job;
    const grpc::Status status = try_submit(server, c.spec, &job);
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_NE(status.error_message().find(c.mentions), std::string::npos) << status.error_message();
    if (c.mentions != "nope" && c.mentions != "base_model and data") {
      EXPECT_NE(status.error_message().find("task 'pets'"), std::string::npos) << status.error_message();
    }
  }
  v1::JobSpec not_json = eval_spec("tiny", {});
  not_json.set_eval_suite("{tasks: oops");
  v1::Job job;
  const grpc::Status status = try_submit(server, not_json, &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("eval_suite: not valid JSON"), std::string::npos) << status.error_message();

  v1::ListJobsRequest lreq;
  v1::ListJobsResponse list;
  grpc::ClientContext ctx;
  ASSERT_TRUE(server.jobs()->ListJobs(&ctx, lreq, &list).ok());
  EXPECT_EQ(list.jobs_size(), 0);  // nothing half-created
}

}  // namespace
}  // namespace refinery
