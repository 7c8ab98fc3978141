#include "server/runtime/server_config.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/base/error.h"

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
    try {
      if (key == "listen") listen = v.get<std::string>();
      else if (key == "metrics_listen") metrics_listen = v.get<std::string>();
      else if (key == "data_dir") data_dir = v.get<std::string>();
      else if (key == "models_dir") models_dir = v.get<std::string>();
      else if (key == "default_model") default_model = v.get<std::string>();
      else if (key == "device") device = v.get<std::string>();
      else if (key == "threads") threads = v.get<int>();
      else if (key == "preprocess_threads") preprocess_threads = v.get<int>();
      else if (key == "model_memory_budget_gb") model_memory_budget_gb = v.get<double>();
      else if (key == "max_request_items") max_request_items = v.get<int>();
      else if (key == "max_message_mb") max_message_mb = v.get<int>();
      else if (key == "shutdown_grace_s") shutdown_grace_s = v.get<double>();
      else if (key == "max_queued_jobs") max_queued_jobs = v.get<int>();
      else if (key == "checkpoint_every") checkpoint_every = v.get<int64_t>();
      else if (key == "max_image_pixels") max_image_pixels = v.get<int64_t>();
      else if (key == "max_batch_images") batcher.max_batch_images = v.get<int>();
      else if (key == "max_batch_texts") batcher.max_batch_texts = v.get<int>();
      else if (key == "max_wait_ms") batcher.max_wait_ms = v.get<double>();
      else if (key == "max_queue_items") batcher.max_queue_items = v.get<int>();
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
  check(model_memory_budget_gb > 0, "--model-memory-budget-gb must be positive");
  check(max_request_items > 0, "--max-request-items must be positive");
  check(max_message_mb > 0, "--max-message-mb must be positive");
  check(batcher.max_batch_images > 0 && batcher.max_batch_texts > 0, "--max-batch-images/--max-batch-texts must be positive");
  check(batcher.max_wait_ms >= 0 || batcher.max_wait_ms == -1, "--max-wait-ms must be >= 0 (or -1 for auto)");
  check(batcher.max_queue_items > 0, "--max-queue-items must be positive");
  check(max_queued_jobs > 0, "--max-queued-jobs must be positive");
  check(checkpoint_every > 0, "--checkpoint-every must be positive");
  check(max_image_pixels > 0, "--max-image-pixels must be positive");
}

std::string ServerConfig::to_json() const {
  nlohmann::json j = {{"listen", listen},
                      {"metrics_listen", metrics_listen},
                      {"data_dir", data_dir},
                      {"models_dir", models_dir},
                      {"default_model", default_model},
                      {"device", device},
                      {"threads", threads},
                      {"preprocess_threads", preprocess_threads},
                      {"model_memory_budget_gb", model_memory_budget_gb},
                      {"max_request_items", max_request_items},
                      {"max_message_mb", max_message_mb},
                      {"shutdown_grace_s", shutdown_grace_s},
                      {"max_queued_jobs", max_queued_jobs},
                      {"checkpoint_every", checkpoint_every},
                      {"max_image_pixels", max_image_pixels},
                      {"max_batch_images", batcher.max_batch_images},
                      {"max_batch_texts", batcher.max_batch_texts},
                      {"max_wait_ms", batcher.max_wait_ms},
                      {"max_queue_items", batcher.max_queue_items}};
  return j.dump();
}

}  // namespace refinery
