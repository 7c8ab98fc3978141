// How results and errors reach the user: one JSON object per line on stdout
// with --json, aligned human text otherwise, and exactly one
// "refinery: error: ..." line on stderr per failure.
#pragma once
#include "refinery/grpc_code_name.h"

#include <grpcpp/support/status.h>

#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/base/progress_bar.h"
#include "refinery/v1/common.pb.h"

namespace refinery::client {

// Exit codes: 0 success, 1 the call or a local input failed, 2 usage.
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;


// Compact, one line: callers pipe it to jq or read it line by line.
void print_json(const nlohmann::ordered_json& value);

// Columns padded to their widest cell; the last column is never padded.
void print_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

// "12.3 ms (preprocess 1.0, queue 0.2, inference 10.1; batch 32)"
std::string describe_timing(const v1::Timing& timing);

std::string format_fixed(double value, int decimals);

// The progress bar of work sent in `calls` calls: on stderr when it is a
// terminal and the work takes more than one call.
ProgressBarOptions call_progress(const std::string& label, const std::string& unit, size_t calls);

// Prints the stderr line for `error` and returns the exit code. `server` is
// named in connection failures, where gRPC's own message may not say which.
int report_error(std::exception_ptr error, const std::string& server);

}  // namespace refinery::client
