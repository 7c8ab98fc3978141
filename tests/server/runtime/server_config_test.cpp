// The server's configuration checks that decide who can reach it.
#include "server/runtime/server_config.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "core/base/error.h"

namespace refinery {
namespace {

std::string refusal(const ServerConfig& config) {
  try {
    config.validate();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ServerConfig, LoopbackAddressesAreRecognised) {
  for (const char* a : {"127.0.0.1:50051", "127.1.2.3:1", "localhost:50051", "[::1]:50051", "unix:/tmp/r.sock"}) {
    EXPECT_TRUE(is_loopback_address(a)) << a;
  }
  for (const char* a : {"0.0.0.0:50051", "[::]:50051", "10.0.0.5:50051", "example.org:50051", "128.0.0.1:1",
                        "127.0.0.1.evil.org:1", "[::1]x:1", ":50051"}) {
    EXPECT_FALSE(is_loopback_address(a)) << a;
  }
}

TEST(ServerConfig, PrecisionIsFp32Bf16OrInt8ForAllModelsOrByName) {
  ServerConfig c;
  EXPECT_EQ(c.batcher.precision, "fp32");
  c.batcher.precision = "bf16";
  EXPECT_EQ(refusal(c), "");
  EXPECT_NE(c.to_json().find("\"precision\":\"bf16\""), std::string::npos) << c.to_json();
  c.batcher.precision = "fp16";
  EXPECT_NE(refusal(c).find("--precision must be fp32, bf16 or int8, got 'fp16'"), std::string::npos) << refusal(c);
  c.batcher.precision = "int8";
  c.batcher.model_precision = {{"vit-b-32", "fp32"}, {"small@2", "int8"}};
  EXPECT_EQ(refusal(c), "");
  EXPECT_NE(c.to_json().find("\"model_precision\":{\"small@2\":\"int8\",\"vit-b-32\":\"fp32\"}"), std::string::npos)
      << c.to_json();
  c.batcher.model_precision["small"] = "int4";
  EXPECT_NE(refusal(c).find("--model-precision small=int4: the precision must be fp32, bf16 or int8"), std::string::npos)
      << refusal(c);
}

TEST(ServerConfig, IdleRpcThreadsFitUnderTheMaximum) {
  ServerConfig c;
  EXPECT_EQ(c.idle_rpc_threads, 64);
  c.idle_rpc_threads = 0;
  EXPECT_NE(refusal(c).find("--idle-rpc-threads must be between 1 and --max-rpc-threads"), std::string::npos);
  c.idle_rpc_threads = 600;  // over --max-rpc-threads 512
  EXPECT_NE(refusal(c).find("--idle-rpc-threads"), std::string::npos);
  c.idle_rpc_threads = 512;
  EXPECT_EQ(refusal(c), "");
}

TEST(ServerConfig, ParallelPassesAreAutoOrACount) {
  ServerConfig c;
  EXPECT_EQ(c.batcher.parallel_passes, 0);  // auto
  c.batcher.parallel_passes = -1;
  EXPECT_NE(refusal(c).find("--parallel-passes must be >= 0"), std::string::npos) << refusal(c);
  c.batcher.parallel_passes = 3;
  EXPECT_EQ(refusal(c), "");
}

TEST(ServerConfig, ARemoteListenerNeedsAuthenticationAndTls) {
  ServerConfig c;
  EXPECT_EQ(refusal(c), "");  // loopback, no security: the default
  c.listen = "0.0.0.0:50051";
  EXPECT_NE(refusal(c).find("--listen 0.0.0.0:50051 accepts connections from other machines, and nothing "
                            "authenticates them"),
            std::string::npos)
      << refusal(c);
  c.security.auth_tokens = "/etc/refinery/tokens";
  EXPECT_NE(refusal(c).find("clear text: give --tls-cert and --tls-key"), std::string::npos) << refusal(c);
  c.security.tls_cert = "server.pem";
  EXPECT_NE(refusal(c).find("--tls-cert and --tls-key go together"), std::string::npos);
  c.security.tls_key = "server.key";
  EXPECT_EQ(refusal(c), "");
  c.security.auth_tokens.clear();
  c.security.tls_client_ca = "ca.pem";  // mutual TLS authenticates too
  EXPECT_EQ(refusal(c), "");

  ServerConfig open;
  open.listen = "[::]:50051";
  open.security.insecure_allow_remote = true;
  EXPECT_EQ(refusal(open), "");
  open.security.tls_client_ca = "ca.pem";
  EXPECT_NE(refusal(open).find("--tls-client-ca needs --tls-cert"), std::string::npos);
}

TEST(ServerConfig, ARemoteHttpApiNeedsWhatARemoteGrpcListenerNeeds) {
  ServerConfig c;
  c.http_listen = "127.0.0.1:8080";
  EXPECT_EQ(refusal(c), "");
  c.http_listen = "0.0.0.0:8080";
  EXPECT_NE(refusal(c).find("--http-listen 0.0.0.0:8080 accepts connections from other machines, and nothing "
                            "authenticates them"),
            std::string::npos)
      << refusal(c);
  c.security.auth_tokens = "/etc/refinery/tokens";
  EXPECT_NE(refusal(c).find("--http-listen 0.0.0.0:8080 accepts connections from other machines, and tokens would "
                            "cross the network in clear text"),
            std::string::npos)
      << refusal(c);
  c.security.tls_cert = "server.pem";
  c.security.tls_key = "server.key";
  EXPECT_EQ(refusal(c), "");
  c.http_threads = 1;
  EXPECT_NE(refusal(c).find("--http-threads"), std::string::npos);
}

TEST(ServerConfig, MetricsOverTlsNeedsTheServersCertificate) {
  ServerConfig c;
  c.metrics_tls = true;
  EXPECT_NE(refusal(c).find("--metrics-tls serves /metrics with --tls-cert and --tls-key"), std::string::npos);
  c.security.tls_cert = "server.pem";
  c.security.tls_key = "server.key";
  EXPECT_EQ(refusal(c), "");
}

// A config file's numbers must fit their fields: 1e300 or 2^31 threads was
// undefined behaviour (a float cast out of range) before, now a named refusal.
TEST(ServerConfig, NumbersOutOfRangeInTheFileAreNamed) {
  char path[] = "/tmp/refineryd-config-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  for (const std::string& text : {std::string(R"({"threads": 1e300})"), std::string(R"({"threads": 2147483648})"),
                                  std::string(R"({"threads": 2.5})")}) {
    FILE* f = std::fopen(path, "w");
    ASSERT_NE(f, nullptr);
    std::fputs(text.c_str(), f);
    std::fclose(f);
    ServerConfig c;
    try {
      c.load_file(path);
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(std::string(path) + ": key 'threads': expected an integer"),
                std::string::npos)
          << e.what();
    }
  }
  std::remove(path);
}

TEST(ServerConfig, ModelPrecisionInTheFileIsAnObjectOfNames) {
  char path[] = "/tmp/refineryd-config-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  auto load = [&](const std::string& text) {
    FILE* f = std::fopen(path, "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
    ServerConfig c;
    c.load_file(path);
    return c;
  };
  const ServerConfig c = load(R"({"precision": "bf16", "model_precision": {"small": "int8", "big@3": "fp32"}})");
  EXPECT_EQ(c.batcher.precision, "bf16");
  EXPECT_EQ(c.batcher.model_precision, (std::map<std::string, std::string>{{"small", "int8"}, {"big@3", "fp32"}}));
  try {
    load(R"({"model_precision": "int8"})");
    ADD_FAILURE() << "a string was taken for the rules";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("key 'model_precision' has the wrong type"), std::string::npos) << e.what();
  }
  std::remove(path);
}

}  // namespace
}  // namespace refinery
