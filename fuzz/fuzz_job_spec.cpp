// A refine job's spec as a client sends it to SubmitJob (the protobuf
// message, or its JSON form as gRPC gateways and `jobs submit --spec` write
// it), then what the server does with it before queueing: defaults filled,
// every field checked, the core's options built and validated, the model
// name derived. Any refusal must be a refinery::Error naming the field.
//
// Input: a mode byte (even: protobuf wire format, odd: JSON), the CPU flag
// in its second bit, then the message.
#include <google/protobuf/util/json_util.h>

#include <string>

#include "fuzz_input.h"
#include "spec/job_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace refinery;
  if (size < 1) return 0;
  const bool json = (data[0] & 1) != 0;
  const bool cpu = (data[0] & 2) != 0;
  v1::JobSpec spec;
  if (json) {
    const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (!google::protobuf::util::JsonStringToMessage(text, &spec).ok()) return 0;
  } else if (!spec.ParseFromArray(data + 1, static_cast<int>(size - 1))) {
    return 0;
  }
  fuzz::expect_clean([&] {
    const v1::JobSpec filled = with_defaults(spec, /*default_checkpoint_every=*/100, cpu);
    const RefineOptions options = refine_options_from_spec(filled);
    options.validate();
    options.to_map();
    derived_model_name(filled.base_model(), filled.method());
  });
  return 0;
}
