#include "client/output.h"

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "client/client_errors.h"
#include "core/base/error.h"

namespace refinery::client {

void print_json(const nlohmann::ordered_json& value) {
  // Replace invalid UTF-8 rather than throw: a server string should never
  // cost the user the whole result.
  std::cout << value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << '\n';
}

void print_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(width[c] - row[c].size() + 2, ' ');
    }
    std::cout << line << '\n';
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

ProgressBarOptions call_progress(const std::string& label, const std::string& unit, size_t calls) {
  ProgressBarOptions o;
  o.label = label;
  o.unit = unit;
  if (calls < 2) o.mode = ProgressBarOptions::Mode::kNever;
  return o;
}

std::string format_fixed(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

std::string describe_timing(const v1::Timing& t) {
  return format_fixed(t.total_ms(), 1) + " ms (preprocess " + format_fixed(t.preprocess_ms(), 1) + ", queue " +
         format_fixed(t.queue_ms(), 1) + ", inference " + format_fixed(t.inference_ms(), 1) + "; batch " +
         std::to_string(t.batch_size()) + ")";
}

int report_error(std::exception_ptr error, const std::string& server) {
  try {
    std::rethrow_exception(error);
  } catch (const RpcError& e) {
    const auto code = e.status().error_code();
    std::string line = std::string("refinery: error: ") + grpc_code_name(code);
    if (!e.status().error_message().empty()) line += ": " + e.status().error_message();  // gRPC's own may have none
    if (!e.context().empty()) line += " (" + e.context() + ")";
    // gRPC's connection errors do not always say where it tried to connect.
    if ((code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED) &&
        line.find(server) == std::string::npos) {
      line += " (server " + server + ", from --server or REFINERY_SERVER)";
    }
    std::cerr << line << '\n';
    return kExitFailure;
  } catch (const UsageError& e) {
    std::cerr << "refinery: error: " << e.what() << "\nRun with --help for more information.\n";
    return kExitUsage;
  } catch (const Error& e) {
    std::cerr << "refinery: error: " << e.what() << '\n';
    return kExitFailure;
  } catch (const std::exception& e) {
    std::cerr << "refinery: error: " << e.what() << '\n';
    return kExitFailure;
  }
}

}  // namespace refinery::client
