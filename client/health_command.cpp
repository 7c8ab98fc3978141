// `refinery health [SERVICE]`: asks the server's standard grpc.health.v1
// service. Its C++ proto is not shipped here, and the messages are one field
// each, so the call goes through a generic stub with hand-made bytes.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <iostream>
#include <memory>

#include "client/commands.h"
#include "client/output.h"
#include "client/server_connection.h"
#include "core/base/error.h"

namespace refinery::client {
namespace {

// grpc.health.v1.HealthCheckResponse.ServingStatus
const char* serving_status_name(uint64_t status) {
  switch (status) {
    case 0: return "UNKNOWN";
    case 1: return "SERVING";
    case 2: return "NOT_SERVING";
    case 3: return "SERVICE_UNKNOWN";
  }
  return "UNKNOWN";
}

// HealthCheckRequest { string service = 1; }
std::string encode_request(const std::string& service) {
  std::string out;
  if (service.empty()) return out;
  out.push_back(static_cast<char>(0x0A));  // field 1, length-delimited
  for (uint64_t n = service.size(); ; n >>= 7) {  // varint length
    if (n < 0x80) {
      out.push_back(static_cast<char>(n));
      break;
    }
    out.push_back(static_cast<char>((n & 0x7F) | 0x80));
  }
  return out + service;
}

// HealthCheckResponse { ServingStatus status = 1; }: returns the status, 0
// (UNKNOWN) when absent, as proto3 omits default values.
uint64_t decode_status(const std::string& bytes) {
  size_t pos = 0;
  auto varint = [&](uint64_t& v) {
    v = 0;
    for (int shift = 0; pos < bytes.size() && shift < 64; shift += 7) {
      const auto b = static_cast<uint8_t>(bytes[pos++]);
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  uint64_t status = 0;
  while (pos < bytes.size()) {
    uint64_t key = 0, value = 0;
    if (!varint(key)) break;
    const uint64_t field = key >> 3, wire = key & 7;
    if (wire == 0) {
      if (!varint(value)) break;
      if (field == 1) status = value;
    } else if (wire == 2) {
      if (!varint(value) || value > bytes.size() - pos) break;
      pos += value;
    } else {
      throw internal_error("health response: unexpected wire type " + std::to_string(wire));
    }
  }
  return status;
}

std::string byte_buffer_to_string(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return {};
  std::string out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

int check_health(const ServerConnection& connection, const std::string& service) {
  grpc::GenericStub stub(connection.channel());
  auto context = connection.context();
  const std::string request_bytes = encode_request(service);
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::CompletionQueue queue;
  auto call = stub.PrepareUnaryCall(context.get(), "/grpc.health.v1.Health/Check", request, &queue);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  queue.Next(&tag, &ok);
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  check_status(status, service.empty() ? "" : "health of service '" + service + "'");

  const char* name = serving_status_name(decode_status(byte_buffer_to_string(response)));
  if (connection.options().json) {
    print_json({{"server", connection.address()}, {"service", service}, {"status", name}});
  } else {
    std::cout << name << '\n';
  }
  // Scripts wait on the exit code: only SERVING is success.
  return std::string(name) == "SERVING" ? 0 : kExitFailure;
}

}  // namespace

void add_health_command(CLI::App& app, Command& command) {
  auto* sub = app.add_subcommand("health", "Ask the server's gRPC health service; exits 0 only when SERVING");
  auto service = std::make_shared<std::string>();
  sub->add_option("service", *service, "A service name, e.g. refinery.v1.EmbeddingService (default: the server)");
  sub->callback([&command, service] {
    command.run = [&command, service] { return check_health(ServerConnection(command.options), *service); };
  });
}

}  // namespace refinery::client
