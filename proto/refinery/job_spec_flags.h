// JobSpec's fields as command-line flags, one per field and named after it
// (--batch-size for batch_size), shared by `refinery jobs submit` and
// `refinery-model refine` so both take the same job options. Values stay
// text until parsing ends, so that only the flags given are set and the
// rest keep "unset" (METHOD.md's defaults, applied by whoever runs the job).
#pragma once

#include <CLI/CLI.hpp>

#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "refinery/v1/job.pb.h"

namespace refinery {

// A flag's value that is not what its JobSpec field takes, or flags that
// do not make sense together (a usage mistake).
class JobSpecFlagError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

class JobSpecFlags {
 public:
  JobSpecFlags();
  // Adds --base, --data, every plain JobSpec field's flag (in `group`),
  // --extra KEY=VALUE, --file SPEC.json, --eval-suite FILE and
  // --eval-at-epochs E1,E2 to `app`, but none for the fields in `leave_out`
  // (JobSpec field names: what the command does not do).
  void add_to(CLI::App* app, const std::string& group, const std::set<std::string>& leave_out = {});
  // The spec: --file first, then the flags given over it. JobSpecFlagError
  // for a bad value; refinery::Error for an unreadable file.
  v1::JobSpec spec() const;

 private:
  struct Values;
  std::shared_ptr<Values> values_;
};

}  // namespace refinery
