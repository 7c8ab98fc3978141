// The job RPCs as tests call them on an in-process server: submit (failing
// the test on an error unless the caller takes the status), get, and watch
// until the stream ends or `stop_when` says so (watch_all: just its events),
// and the states a job passed through.
#pragma once
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "server/test_server.h"

namespace refinery::testing {

struct Watched {
  std::vector<v1::JobEvent> events;
  grpc::Status status;
};

inline Watched watch(TestServer& server, const std::string& id, int64_t from_seq = 0,
                     const std::function<bool(const v1::JobEvent&)>& stop_when = {},
                     std::chrono::seconds deadline = std::chrono::seconds(240)) {
  Watched w;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  v1::WatchJobRequest req;
  req.set_id(id);
  req.set_from_seq(from_seq);
  auto reader = server.jobs()->WatchJob(&ctx, req);
  v1::JobEvent e;
  while (reader->Read(&e)) {
    w.events.push_back(e);
    if (stop_when && stop_when(e)) {
      ctx.TryCancel();
      break;
    }
  }
  w.status = reader->Finish();
  return w;
}

inline std::vector<v1::JobEvent> watch_all(TestServer& server, const std::string& id,
                                           const std::function<bool(const v1::JobEvent&)>& stop_when = {}) {
  return watch(server, id, 0, stop_when, std::chrono::seconds(300)).events;
}

inline std::vector<v1::JobState> states_of(const std::vector<v1::JobEvent>& events) {
  std::vector<v1::JobState> out;
  for (const auto& e : events) {
    if (e.has_state()) out.push_back(e.state().state());
  }
  return out;
}

inline v1::Job submit(TestServer& server, const v1::JobSpec& spec, grpc::Status* status = nullptr,
               const std::string& request_id = "") {
  v1::SubmitJobRequest req;
  *req.mutable_spec() = spec;
  req.set_client_request_id(request_id);
  v1::Job job;
  grpc::ClientContext ctx;
  grpc::Status s = server.jobs()->SubmitJob(&ctx, req, &job);
  if (status != nullptr) {
    *status = s;
  } else {
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  return job;
}

inline v1::Job get(TestServer& server, const std::string& id) {
  v1::GetJobRequest req;
  req.set_id(id);
  v1::Job job;
  grpc::ClientContext ctx;
  EXPECT_TRUE(server.jobs()->GetJob(&ctx, req, &job).ok());
  return job;
}

}  // namespace refinery::testing
