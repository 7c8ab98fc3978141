#include "spec/job_events.h"

#include <cmath>

namespace refinery {
namespace {

double finite_or_zero(double v) { return std::isfinite(v) ? v : 0.0; }

}  // namespace

v1::JobEvent step_event(const StepReport& r) {
  v1::JobEvent event;
  v1::StepEvent* s = event.mutable_step();
  s->set_step(r.step);
  s->set_total_steps(r.total_steps);
  s->set_epoch(r.epoch);
  s->set_loss(finite_or_zero(r.loss));
  s->set_loss_rafa(finite_or_zero(r.loss_rafa));
  s->set_loss_hycd(finite_or_zero(r.loss_hycd));
  s->set_loss_contrastive(finite_or_zero(r.loss_contrastive));
  s->set_loss_align(finite_or_zero(r.loss_align));
  s->set_lr(r.lr);
  s->set_samples_per_second(r.samples_per_second);
  s->set_data_seconds(r.data_seconds);
  s->set_eta_seconds(r.eta_seconds);
  s->set_images_skipped(r.images_skipped);
  return event;
}

v1::JobEvent eval_event(int64_t step, const std::map<std::string, double>& metrics) {
  v1::JobEvent event;
  event.mutable_eval()->set_step(step);
  for (const auto& [k, v] : metrics) (*event.mutable_eval()->mutable_metrics())[k] = v;
  return event;
}

v1::JobEvent checkpoint_event(const TrainingCheckpointInfo& written) {
  v1::JobEvent event;
  event.mutable_checkpoint()->set_step(written.step);
  event.mutable_checkpoint()->set_path(written.path);
  return event;
}

v1::JobEvent state_event(v1::JobState state, const std::string& message) {
  v1::JobEvent event;
  event.mutable_state()->set_state(state);
  event.mutable_state()->set_message(message);
  return event;
}

v1::JobEvent result_event(const std::string& model, int32_t epoch) {
  v1::JobEvent event;
  event.mutable_result()->set_model(model);
  event.mutable_result()->set_epoch(epoch);
  return event;
}

StepReport step_report(const v1::StepEvent& s) {
  StepReport r;
  r.step = s.step();
  r.total_steps = s.total_steps();
  r.epoch = s.epoch();
  r.loss = s.loss();
  r.loss_rafa = s.loss_rafa();
  r.loss_hycd = s.loss_hycd();
  r.loss_contrastive = s.loss_contrastive();
  r.loss_align = s.loss_align();
  r.lr = s.lr();
  r.samples_per_second = s.samples_per_second();
  r.data_seconds = s.data_seconds();
  r.eta_seconds = s.eta_seconds();
  r.images_skipped = s.images_skipped();
  return r;
}

}  // namespace refinery
