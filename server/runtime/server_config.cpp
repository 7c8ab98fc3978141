#include "server/runtime/server_config.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/base/error.h"
#include "core/base/json_integer.h"

namespace refinery {
namespace {

std::string normalise_key(std::string k) {
  for (char& c : k) {
    if (c == '-') c = '_';
  }
  return k;
}

}  // namespace

void ServerConfig::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw not_found(path + ": cannot open config file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw invalid_argument(path + ": not valid JSON: " + without_quoted_input(e.what()));
  }
  if (!j.is_object()) throw invalid_argument(path + ": must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string key = normalise_key(it.key());
    const auto& v = it.value();
    const std::string where = path + ": key '" + it.key() + "'";
    try {
      if (key == "listen") listen = v.get<std::string>();
      else if (key == "metrics_listen") metrics_listen = v.get<std::string>();
      else if (key == "metrics_tls") metrics_tls = v.get<bool>();
      else if (key == "http_listen") http_listen = v.get<std::string>();
      else if (key == "http_threads") http_threads = json_integer<int>(v, where);
      else if (key == "data_dir") data_dir = v.get<std::string>();
      else if (key == "models_dir") models_dir = v.get<std::string>();
      else if (key == "default_model") default_model = v.get<std::string>();
      else if (key == "device") device = v.get<std::string>();
      else if (key == "threads") threads = json_integer<int>(v, where);
      else if (key == "preprocess_threads") preprocess_threads = json_integer<int>(v, where);
      else if (key == "decode_memory_mb") decode_memory_mb = json_integer<int64_t>(v, where);
      else if (key == "model_memory_budget_gb") model_memory_budget_gb = v.get<double>();
      else if (key == "max_request_items") max_request_items = json_integer<int>(v, where);
      else if (key == "max_message_mb") max_message_mb = json_integer<int>(v, where);
      else if (key == "shutdown_grace_s") shutdown_grace_s = v.get<double>();
      else if (key == "max_queued_jobs") max_queued_jobs = json_integer<int>(v, where);
      else if (key == "checkpoint_every") checkpoint_every = json_integer<int64_t>(v, where);
      else if (key == "max_step_events") max_step_events = json_integer<int64_t>(v, where);
      else if (key == "max_image_pixels") max_image_pixels = json_integer<int64_t>(v, where);
      else if (key == "max_index_items") max_index_items = json_integer<int64_t>(v, where);
      else if (key == "max_rpc_threads") max_rpc_threads = json_integer<int>(v, where);
      else if (key == "idle_rpc_threads") idle_rpc_threads = json_integer<int>(v, where);
      else if (key == "max_streams_per_connection") max_streams_per_connection = json_integer<int>(v, where);
      else if (key == "keepalive_s") keepalive_s = v.get<double>();
      else if (key == "max_connection_idle_s") max_connection_idle_s = v.get<double>();
      else if (key == "max_connection_age_s") max_connection_age_s = v.get<double>();
      else if (key == "tls_cert") security.tls_cert = v.get<std::string>();
      else if (key == "tls_key") security.tls_key = v.get<std::string>();
      else if (key == "tls_client_ca") security.tls_client_ca = v.get<std::string>();
      else if (key == "auth_tokens") security.auth_tokens = v.get<std::string>();
      else if (key == "insecure_allow_remote") security.insecure_allow_remote = v.get<bool>();
      else if (key == "data_root") security.data_roots = v.get<std::vector<std::string>>();
      else if (key == "import_root") security.import_roots = v.get<std::vector<std::string>>();
      else if (key == "export_root") security.export_roots = v.get<std::vector<std::string>>();
      else if (key == "allow_pickle") security.allow_pickle = v.get<bool>();
      else if (key == "max_batch_images") batcher.max_batch_images = json_integer<int>(v, where);
      else if (key == "max_batch_texts") batcher.max_batch_texts = json_integer<int>(v, where);
      else if (key == "max_wait_ms") batcher.max_wait_ms = v.get<double>();
      else if (key == "max_queue_items") batcher.max_queue_items = json_integer<int>(v, where);
      else if (key == "parallel_passes") batcher.parallel_passes = json_integer<int>(v, where);
      else if (key == "precision") batcher.precision = v.get<std::string>();
      else if (key == "model_precision") batcher.model_precision = v.get<std::map<std::string, std::string>>();
      else throw invalid_argument(path + ": unknown key '" + it.key() + "'");
    } catch (const nlohmann::json::exception& e) {
      throw invalid_argument(path + ": key '" + it.key() + "' has the wrong type: " + without_quoted_input(e.what()));
    }
  }
  config_file = path;
}

void ServerConfig::validate() const {
  auto check = [](bool ok, const std::string& what) {
    if (!ok) throw invalid_argument("invalid configuration: " + what);
  };
  check(!listen.empty(), "--listen must not be empty");
  check(!data_dir.empty(), "--data-dir must not be empty");
  check(threads >= 0, "--threads must be >= 0");
  check(preprocess_threads >= 0, "--preprocess-threads must be >= 0");
  check(decode_memory_mb > 0 && decode_memory_mb <= (int64_t(1) << 30), "--decode-memory-mb must be positive");
  check(model_memory_budget_gb > 0, "--model-memory-budget-gb must be positive");
  check(max_request_items > 0, "--max-request-items must be positive");
  check(max_message_mb > 0, "--max-message-mb must be positive");
  check(batcher.max_batch_images > 0 && batcher.max_batch_texts > 0, "--max-batch-images/--max-batch-texts must be positive");
  check(batcher.max_wait_ms >= 0 || batcher.max_wait_ms == -1, "--max-wait-ms must be >= 0 (or -1 for auto)");
  check(batcher.max_queue_items > 0, "--max-queue-items must be positive");
  check(batcher.parallel_passes >= 0, "--parallel-passes must be >= 0 (0 = auto)");
  auto known_precision = [](const std::string& p) { return p == "fp32" || p == "bf16" || p == "int8"; };
  check(known_precision(batcher.precision), "--precision must be fp32, bf16 or int8, got '" + batcher.precision + "'");
  for (const auto& [model, precision] : batcher.model_precision) {
    check(!model.empty(), "--model-precision needs NAME=PRECISION, got an empty name");
    check(known_precision(precision),
          "--model-precision " + model + "=" + precision + ": the precision must be fp32, bf16 or int8");
  }
  check(max_queued_jobs > 0, "--max-queued-jobs must be positive");
  check(checkpoint_every > 0, "--checkpoint-every must be positive");
  check(max_step_events >= 10, "--max-step-events must be at least 10");
  check(max_image_pixels > 0, "--max-image-pixels must be positive");
  check(max_index_items > 0, "--max-index-items must be positive");
  check(max_rpc_threads >= 4, "--max-rpc-threads must be at least 4");
  check(idle_rpc_threads >= 1 && idle_rpc_threads <= max_rpc_threads,
        "--idle-rpc-threads must be between 1 and --max-rpc-threads");
  check(max_streams_per_connection > 0, "--max-streams-per-connection must be positive");
  check(keepalive_s >= 1, "--keepalive-s must be at least 1");
  check(max_connection_idle_s >= 0 && max_connection_age_s >= 0,
        "--max-connection-idle-s and --max-connection-age-s must not be negative (0 = off)");
  check(security.tls_cert.empty() == security.tls_key.empty(), "--tls-cert and --tls-key go together");
  check(security.tls_client_ca.empty() || security.tls(), "--tls-client-ca needs --tls-cert and --tls-key");
  check(!metrics_tls || security.tls(), "--metrics-tls serves /metrics with --tls-cert and --tls-key: give both");
  check(http_threads >= 2 && http_threads <= 4096, "--http-threads must be from 2 to 4096");
  for (const auto& [flag, address] : {std::pair<std::string, std::string>{"--listen", listen}, {"--http-listen", http_listen}}) {
    if (address.empty() || is_loopback_address(address) || security.insecure_allow_remote) continue;
    check(security.authenticates(),
          flag + " " + address + " accepts connections from other machines, and nothing authenticates them: "
          "give --auth-tokens FILE (with --tls-cert/--tls-key) or --tls-client-ca, or --insecure-allow-remote "
          "if something in front of refineryd does");
    check(security.tls(), flag + " " + address + " accepts connections from other machines, and tokens would "
                          "cross the network in clear text: give --tls-cert and --tls-key, or "
                          "--insecure-allow-remote if something in front of refineryd terminates TLS");
  }
}

ServerPathRoots make_path_roots(const ServerConfig& config) {
  auto roots = [&](const std::vector<std::string>& given, const char* folder, const char* flag) {
    if (!given.empty()) return PathRoots(given, flag);
    const std::string dir = config.data_dir + "/" + folder;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw invalid_argument("cannot make " + dir + " (the default " + flag + "): " + ec.message());
    return PathRoots({dir}, flag);
  };
  return {roots(config.security.data_roots, "datasets", "--data-root"),
          roots(config.security.import_roots, "import", "--import-root"),
          roots(config.security.export_roots, "export", "--export-root")};
}

bool is_loopback_address(const std::string& listen) {
  if (listen.rfind("unix:", 0) == 0 || listen.rfind("unix-abstract:", 0) == 0) return true;
  std::string host;
  if (!listen.empty() && listen[0] == '[') {
    const size_t close = listen.find(']');
    if (close == std::string::npos) return false;
    host = listen.substr(1, close - 1);
    return host == "::1" && close + 1 < listen.size() && listen[close + 1] == ':';
  }
  const size_t colon = listen.rfind(':');
  host = listen.substr(0, colon);
  if (host == "localhost") return true;
  // 127.0.0.0/8
  unsigned a = 0, b = 0, c = 0, d = 0;
  char tail = 0;
  return std::sscanf(host.c_str(), "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 &&
         c < 256 && d < 256;
}

std::string ServerConfig::to_json() const {
  nlohmann::json j = {{"listen", listen},
                      {"metrics_listen", metrics_listen},
                      {"metrics_tls", metrics_tls},
                      {"http_listen", http_listen},
                      {"http_threads", http_threads},
                      {"data_dir", data_dir},
                      {"models_dir", models_dir},
                      {"default_model", default_model},
                      {"device", device},
                      {"threads", threads},
                      {"preprocess_threads", preprocess_threads},
                      {"decode_memory_mb", decode_memory_mb},
                      {"model_memory_budget_gb", model_memory_budget_gb},
                      {"max_request_items", max_request_items},
                      {"max_message_mb", max_message_mb},
                      {"shutdown_grace_s", shutdown_grace_s},
                      {"max_queued_jobs", max_queued_jobs},
                      {"checkpoint_every", checkpoint_every},
                      {"max_step_events", max_step_events},
                      {"max_image_pixels", max_image_pixels},
                      {"max_index_items", max_index_items},
                      {"max_rpc_threads", max_rpc_threads},
                      {"idle_rpc_threads", idle_rpc_threads},
                      {"max_streams_per_connection", max_streams_per_connection},
                      {"keepalive_s", keepalive_s},
                      {"max_connection_idle_s", max_connection_idle_s},
                      {"max_connection_age_s", max_connection_age_s},
                      {"max_batch_images", batcher.max_batch_images},
                      {"max_batch_texts", batcher.max_batch_texts},
                      {"max_wait_ms", batcher.max_wait_ms},
                      {"max_queue_items", batcher.max_queue_items},
                      {"parallel_passes", batcher.parallel_passes},
                      {"precision", batcher.precision},
                      {"model_precision", batcher.model_precision},
                      {"tls_cert", security.tls_cert},
                      {"tls_key", security.tls_key},
                      {"tls_client_ca", security.tls_client_ca},
                      {"auth_tokens", security.auth_tokens},
                      {"insecure_allow_remote", security.insecure_allow_remote},
                      {"data_root", security.data_roots},
                      {"import_root", security.import_roots},
                      {"export_root", security.export_roots},
                      {"allow_pickle", security.allow_pickle}};
  return j.dump();
}

}  // namespace refinery
