// refineryd's configuration: one plain struct, defaults next to the fields,
// filled from a JSON config file (same keys as the flags, with '-' or '_')
// and then from flags, which win.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/base/path_roots.h"

namespace refinery {

struct BatcherConfig {
  // Items computed at once on a device: one forward pass's batch, split
  // evenly over the passes that run side by side (parallel_passes).
  int max_batch_images = 32;
  int max_batch_texts = 128;
  // How long a batch waits for company after its first call (and after the
  // previous batch ended) when not every expected caller is queued yet.
  // -1 = auto: per (model, modality), a tenth of the time its forward
  // passes take, measured as they run (wait_budget.h): 150 ms for a
  // ViT-B/32 batch on 2 CPU cores, under a ms on a GPU. >= 0: that many
  // ms, whatever the model. A lone caller never waits.
  double max_wait_ms = -1;
  int max_queue_items = 4096;    // queued items per (model, modality); beyond: RESOURCE_EXHAUSTED
  // Forward passes that may run at once on a CPU, each on --threads /
  // parallel_passes intra-op threads; a lane (model, modality) runs as many
  // batches side by side. 0 = auto: 2 where there are at least 2 threads.
  // Small per-pass thread counts synchronise less, and one pass's serial
  // parts and batch formation leave the cores to the other: on 2 cores, two
  // one-thread passes of batch 16 gave 1.27x the images/s of one two-thread
  // pass of batch 32 (small 224 px model), 1.12x (ViT-B/32). A lone call
  // then runs on its share of the threads only. A GPU runs one pass at a time.
  int parallel_passes = 0;
  // Every model's forward passes: fp32, bf16 through autocast, or int8
  // (dynamically quantized linear layers, CPU only); refused at start where
  // the device cannot run it (core/runtime/inference_precision.h).
  std::string precision = "fp32";
  // Per model, by "name" or "name@version" (--model-precision NAME=PRECISION,
  // repeatable; config file: "model_precision": {"NAME": "int8"}). A model
  // imported with a precision keeps its own.
  std::map<std::string, std::string> model_precision;
};

// Who may connect and what they may do (access_control.h). Without TLS and
// tokens the server accepts loopback listeners only.
struct SecurityConfig {
  std::string tls_cert;        // PEM certificate chain: serve gRPC over TLS
  std::string tls_key;         // its PEM private key
  std::string tls_client_ca;   // PEM CA: clients must present a certificate it signed (mTLS)
  std::string auth_tokens;     // tokens file (TOKEN ROLE [NAME] lines or JSON); reloaded on SIGHUP
  bool insecure_allow_remote = false;  // listen beyond loopback without authentication
  // Where client-named paths may lead (path_roots.h); empty: a folder of
  // --data-dir (datasets/, import/, export/), made at start.
  std::vector<std::string> data_roots;    // job data sets, eval sets and their images
  std::vector<std::string> import_roots;  // ImportModel
  std::vector<std::string> export_roots;  // ExportModel
  bool allow_pickle = false;              // ImportModel may load TorchScript/pickle (runs code)

  bool tls() const { return !tls_cert.empty(); }
  bool mtls() const { return !tls_client_ca.empty(); }
  // Callers are identified: by token, or by a client certificate.
  bool authenticates() const { return !auth_tokens.empty() || mtls(); }
};

struct ServerConfig;

// The roots of a config, its defaults made (folders under data_dir).
struct ServerPathRoots {
  PathRoots data;
  PathRoots imports;
  PathRoots exports;
};
ServerPathRoots make_path_roots(const ServerConfig& config);

// Whether `listen` (HOST:PORT, [V6]:PORT, unix:PATH) only accepts
// connections from this machine.
bool is_loopback_address(const std::string& listen);

struct ServerConfig {
  std::string listen = "127.0.0.1:50051";
  std::string metrics_listen = "127.0.0.1:9464";  // empty: no metrics endpoint
  bool metrics_tls = false;                        // /metrics over TLS with --tls-cert/--tls-key (mTLS with --tls-client-ca)
  // The HTTP/JSON API (OpenAI-compatible /v1/embeddings and JSON mirrors of
  // the gRPC methods); empty: off. HTTPS, and the same tokens, when gRPC has
  // them. Each request in flight holds one of http_threads (an event stream
  // for as long as it is open); beyond them requests wait.
  std::string http_listen;
  int http_threads = 32;
  std::string data_dir = "./refinery-data";        // jobs DB, checkpoints, indexes
  std::string models_dir;                          // every checkpoint here is registered at start
  std::string default_model;                       // empty: the first registered
  std::string device = "auto";                     // auto | cpu | cuda[:N]
  int threads = 0;                                 // LibTorch intra-op threads; 0 = all cores
  int preprocess_threads = 0;                      // image decode workers; 0 = cores
  int64_t decode_memory_mb = 1024;                 // what the decodes in flight may hold together
  double model_memory_budget_gb = 8.0;             // loaded weights; least recently used unloaded first
  int max_request_items = 1024;                    // texts or images in one call
  int max_message_mb = 64;                         // gRPC receive limit
  double shutdown_grace_s = 30.0;                  // SIGTERM: time given to in-flight calls
  int max_queued_jobs = 64;                        // refine jobs waiting; beyond: RESOURCE_EXHAUSTED
  int64_t checkpoint_every = 100;                  // a job's checkpoint interval (steps) unless it sets one
  int64_t max_step_events = 10'000;                // a job's step events kept; older ones thinned to an even stride
  int64_t max_image_pixels = 40'000'000;           // width x height, checked from the header before decoding
  int64_t max_index_items = 10'000'000;            // items in one index; beyond: RESOURCE_EXHAUSTED
  // Transport limits (gRPC): handler threads (each in-flight call holds one;
  // beyond: RESOURCE_EXHAUSTED), streams per connection, keepalive pings to
  // find dead peers, and closing idle (and, if set, old) connections.
  int max_rpc_threads = 512;
  // Handler threads kept waiting for the next call once theirs is answered.
  // gRPC's default keeps 2: under 32 concurrent callers every other call
  // then created a thread and ended it (thread start, stack and TLS set-up:
  // 7-10% of refineryd's CPU, measured with perf). Beyond this many idle
  // threads, the extra ones still end.
  int idle_rpc_threads = 64;
  int max_streams_per_connection = 128;
  double keepalive_s = 60.0;
  double max_connection_idle_s = 3600.0;
  double max_connection_age_s = 0.0;               // 0 = connections may live forever
  BatcherConfig batcher;
  SecurityConfig security;
  std::string config_file;                         // where this came from, if anywhere

  // Reads a JSON object; unknown keys are an error naming them.
  void load_file(const std::string& path);
  void validate() const;  // throws invalid_argument naming the bad field
  std::string to_json() const;
};

}  // namespace refinery
