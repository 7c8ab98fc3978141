// refineryd: the Refinery server. Loads CLIP checkpoints and serves
// embeddings, zero-shot classification, ranking and vector search over gRPC,
// with Prometheus metrics on a separate HTTP port.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "core/base/disk_space.h"
#include "core/base/error.h"
#include "core/base/pem_file.h"
#include "core/image/image_decoder.h"
#include "core/runtime/torch_runtime.h"
#include "server/embedding/embedding_engine.h"
#include "server/embedding/embedding_metrics.h"
#include "server/embedding/embedding_service.h"
#include "server/index/index_registry.h"
#include "server/http/http_listener.h"
#include "server/http_api/http_api.h"
#include "server/index/index_service.h"
#include "server/jobs/job_manager.h"
#include "server/jobs/job_metrics.h"
#include "server/jobs/job_service.h"
#include "server/metrics/metrics_http_server.h"
#include "server/metrics/metrics_registry.h"
#include "server/metrics/process_metrics.h"
#include "server/models/model_registry.h"
#include "server/models/model_service.h"
#include "server/runtime/access_control.h"
#include "server/runtime/call_guard.h"
#include "server/runtime/log.h"
#include "server/runtime/memory_budget.h"
#include "server/runtime/rpc_metrics.h"
#include "server/runtime/server_config.h"
#include "server/runtime/worker_pool.h"

namespace refinery {
namespace {

// Sets one series per key of `values` and drops the series of keys gone
// since the last call (a deleted model, a reclaimed queue, a dropped index).
class GaugeSeries {
 public:
  explicit GaugeSeries(GaugeFamily& family) : family_(family) {}
  template <typename Map>
  void set(const Map& values) {
    std::set<std::string> now;
    for (const auto& [key, value] : values) {
      family_.with({key}).Set(static_cast<double>(value));
      now.insert(key);
    }
    for (const auto& key : shown_) {
      if (now.count(key) == 0) family_.remove({key});
    }
    shown_ = std::move(now);
  }

 private:
  GaugeFamily& family_;
  std::set<std::string> shown_;
};

std::shared_ptr<grpc::ServerCredentials> server_credentials(const SecurityConfig& security) {
  if (!security.tls()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(security.mtls()
                                                ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                                : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (security.mtls()) options.pem_root_certs = read_pem_file(security.tls_client_ca, "--tls-client-ca");
  options.pem_key_cert_pairs.push_back(
      {read_pem_file(security.tls_key, "--tls-key"), read_pem_file(security.tls_cert, "--tls-cert")});
  return grpc::SslServerCredentials(options);
}

std::string describe_security(const ServerConfig& cfg, const AccessControl* access) {
  std::string s = cfg.security.mtls() ? "mutual TLS" : cfg.security.tls() ? "TLS" : "no TLS";
  s += access != nullptr ? "; " + access->summary() + " from " + access->tokens_file()
       : cfg.security.mtls() ? "; no tokens: every client with a certificate may call everything"
                             : "; no tokens: every caller may call everything";
  if (!is_loopback_address(cfg.listen) && cfg.security.insecure_allow_remote) {
    s += "; WARNING: --insecure-allow-remote on " + cfg.listen;
  }
  return s;
}

// Flags override the config file: read --config first, then parse the rest
// into the same struct.
ServerConfig parse_config(int argc, char** argv) {
  ServerConfig cfg;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) cfg.load_file(argv[i + 1]);
    if (a.rfind("--config=", 0) == 0) cfg.load_file(a.substr(9));
  }
  CLI::App app{"refineryd: refines CLIP models (CLIP-Refine jobs) and serves embeddings, zero-shot classification, ranking and vector search over gRPC."};
  app.set_version_flag("--version", std::string("refineryd ") + REFINERY_VERSION);
  std::string config_file = cfg.config_file;
  app.add_option("--config", config_file, "JSON config file (keys as the flags); flags win");
  app.add_option("--listen", cfg.listen, "gRPC address HOST:PORT")->capture_default_str();
  app.add_option("--metrics-listen", cfg.metrics_listen, "Prometheus /metrics address HOST:PORT ('' = off)")
      ->capture_default_str();
  app.add_flag("--metrics-tls", cfg.metrics_tls,
               "Serve /metrics over HTTPS with --tls-cert/--tls-key; with --tls-client-ca scrapers need a client "
               "certificate it signed");
  app.add_option("--http-listen", cfg.http_listen,
                 "HTTP/JSON API address HOST:PORT: OpenAI-compatible /v1/embeddings, JSON mirrors of the gRPC "
                 "methods, /openapi.json ('' = off; HTTPS and tokens as for gRPC)")
      ->capture_default_str();
  app.add_option("--http-threads", cfg.http_threads,
                 "HTTP requests served at once (an open event stream holds one)")
      ->capture_default_str();
  app.add_option("--data-dir", cfg.data_dir, "Jobs DB, checkpoints and indexes; survives restarts")->capture_default_str();
  app.add_option("--models-dir", cfg.models_dir, "Every checkpoint in this folder is registered by name at start");
  app.add_option("--default-model", cfg.default_model, "Model used when a call names none (default: first registered)");
  app.add_option("--device", cfg.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--threads", cfg.threads, "LibTorch intra-op threads (0 = all cores)")->capture_default_str();
  app.add_option("--decode-memory-mb", cfg.decode_memory_mb,
                 "Memory the image decodes in flight may hold together (each leases what its header says)")
      ->capture_default_str();
  app.add_option("--preprocess-threads", cfg.preprocess_threads, "Image decode workers (0 = all cores)")
      ->capture_default_str();
  app.add_option("--model-memory-budget-gb", cfg.model_memory_budget_gb,
                 "Loaded model weights; least recently used models are unloaded beyond it")
      ->capture_default_str();
  app.add_option("--max-batch-images", cfg.batcher.max_batch_images, "Images per forward pass")->capture_default_str();
  app.add_option("--max-batch-texts", cfg.batcher.max_batch_texts, "Texts per forward pass")->capture_default_str();
  app.add_option("--max-wait-ms", cfg.batcher.max_wait_ms,
                 "How long a batch waits for more calls (-1 = auto: a tenth of the model's measured pass time)")
      ->capture_default_str();
  app.add_option("--parallel-passes", cfg.batcher.parallel_passes,
                 "Forward passes at once on a CPU, each on --threads / N intra-op threads (0 = auto: 2 with 2 or more "
                 "threads; a GPU runs one)")
      ->capture_default_str();
  app.add_option("--precision", cfg.batcher.precision,
                 "Every model's forward passes: fp32, bf16 (autocast; needs AVX512-BF16 or AMX on a CPU) or int8 "
                 "(linear layers quantized dynamically; CPU with VNNI)")
      ->capture_default_str();
  std::vector<std::string> model_precision;
  app.add_option("--model-precision", model_precision,
                 "NAME=PRECISION or NAME@VERSION=PRECISION: one model's precision (repeatable; wins over --precision)");
  app.add_option("--max-queue-items", cfg.batcher.max_queue_items,
                 "Queued items per model and modality before calls get RESOURCE_EXHAUSTED")
      ->capture_default_str();
  app.add_option("--max-request-items", cfg.max_request_items, "Texts or images in one call")->capture_default_str();
  app.add_option("--max-message-mb", cfg.max_message_mb, "Largest request message")->capture_default_str();
  app.add_option("--shutdown-grace-s", cfg.shutdown_grace_s, "Time in-flight calls get after SIGTERM")
      ->capture_default_str();
  app.add_option("--max-queued-jobs", cfg.max_queued_jobs, "Refine jobs waiting to run")->capture_default_str();
  app.add_option("--checkpoint-every", cfg.checkpoint_every,
                 "Steps between a refine job's checkpoints, unless the job sets its own")
      ->capture_default_str();
  app.add_option("--max-step-events", cfg.max_step_events,
                 "Step events kept per job; a longer job's older ones are thinned to an even stride")
      ->capture_default_str();
  app.add_option("--max-image-pixels", cfg.max_image_pixels,
                 "Largest image (width x height) decoded; larger ones are refused from their header")
      ->capture_default_str();
  app.add_option("--max-index-items", cfg.max_index_items, "Items in one vector index")->capture_default_str();
  app.add_option("--max-rpc-threads", cfg.max_rpc_threads,
                 "Calls in flight at once (each holds a thread); beyond: RESOURCE_EXHAUSTED")
      ->capture_default_str();
  app.add_option("--idle-rpc-threads", cfg.idle_rpc_threads,
                 "Handler threads kept waiting for calls between bursts (more in flight start threads that end after)")
      ->capture_default_str();
  app.add_option("--max-streams-per-connection", cfg.max_streams_per_connection, "Concurrent calls on one connection")
      ->capture_default_str();
  app.add_option("--keepalive-s", cfg.keepalive_s, "Ping idle connections this often to find dead peers")
      ->capture_default_str();
  app.add_option("--max-connection-idle-s", cfg.max_connection_idle_s, "Close connections idle this long (0 = never)")
      ->capture_default_str();
  app.add_option("--max-connection-age-s", cfg.max_connection_age_s,
                 "Close connections this old, after a grace for their calls (0 = never)")
      ->capture_default_str();
  app.add_option("--tls-cert", cfg.security.tls_cert, "PEM certificate chain: serve gRPC over TLS");
  app.add_option("--tls-key", cfg.security.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", cfg.security.tls_client_ca,
                 "PEM CA certificate: clients must present a certificate it signed (mutual TLS)");
  app.add_option("--auth-tokens", cfg.security.auth_tokens,
                 "Tokens file, one 'TOKEN ROLE [NAME]' per line (roles reader, trainer, admin) or JSON; "
                 "reloaded on SIGHUP");
  app.add_option("--data-root", cfg.security.data_roots,
                 "Folder that job data sets, eval sets and their images may lie in (repeatable; default DATA_DIR/datasets)");
  app.add_option("--import-root", cfg.security.import_roots,
                 "Folder that `models import` may read from (repeatable; default DATA_DIR/import)");
  app.add_option("--export-root", cfg.security.export_roots,
                 "Folder that `models export` may write to (repeatable; default DATA_DIR/export)");
  app.add_flag("--allow-pickle", cfg.security.allow_pickle,
               "Let `models import` load TorchScript and pickle checkpoints, which run code as they load");
  app.add_flag("--insecure-allow-remote", cfg.security.insecure_allow_remote,
               "Listen beyond loopback without authentication (only behind something that authenticates)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  for (const auto& rule : model_precision) {
    const size_t eq = rule.rfind('=');
    if (eq == std::string::npos) {
      throw invalid_argument("--model-precision " + single_quoted(rule) + ": expected NAME=PRECISION");
    }
    cfg.batcher.model_precision[rule.substr(0, eq)] = rule.substr(eq + 1);
  }
  cfg.validate();
  return cfg;
}

int run(int argc, char** argv) {
  const ServerConfig cfg = parse_config(argc, argv);
  // Signals are taken by sigwait below; every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  set_max_image_pixels(cfg.max_image_pixels);
  if (decode_memory_for_pixels(cfg.max_image_pixels) > (cfg.decode_memory_mb << 20)) {
    throw invalid_argument("--decode-memory-mb " + std::to_string(cfg.decode_memory_mb) +
                           " cannot hold one image of --max-image-pixels " + std::to_string(cfg.max_image_pixels) +
                           " (needs " + std::to_string((decode_memory_for_pixels(cfg.max_image_pixels) >> 20) + 1) +
                           " MiB)");
  }
  RuntimeOptions ro;
  ro.threads = cfg.threads;
  ro.device = cfg.device;
  const RuntimeInfo runtime = configure_runtime(ro);
  const c10::Device resolved = resolve_device(cfg.device);
  const std::string device = resolved.str();
  log_info("refineryd %s starting: %s, device %s", REFINERY_VERSION, runtime.summary().c_str(), device.c_str());
  if (!cfg.config_file.empty()) log_info("config file %s", cfg.config_file.c_str());

  MetricsRegistry metrics_registry;
  RpcMetrics rpc_metrics(metrics_registry);
  EmbeddingMetrics embedding_metrics(metrics_registry);
  register_process_metrics(metrics_registry);
  metrics_registry.gauge("refinery_build_info", "Build information (value 1)", {"version", "torch", "device"})
      .with({REFINERY_VERSION, runtime.torch_version, device}).Set(1);

  ModelRegistryOptions mo;
  mo.models_dir = cfg.models_dir;
  mo.data_dir = cfg.data_dir;
  mo.default_model = cfg.default_model;
  mo.memory_budget_bytes = static_cast<int64_t>(cfg.model_memory_budget_gb * (1 << 30));
  mo.device = device;
  mo.precision = cfg.batcher.precision;
  mo.model_precision = cfg.batcher.model_precision;
  mo.bf16_weight_copies = resolve_parallel_passes(cfg.batcher, resolved.is_cpu(), runtime.threads);
  auto& load_seconds = metrics_registry.histogram(
      "refinery_model_load_duration_seconds",
      "Time to load a model's weights from its file onto the serving device (first use, or after an unload)",
      {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120}, {"model", "format"});
  mo.on_loaded = [&load_seconds](const ModelEntry& e, double seconds) {
    load_seconds.with({e.name, e.format}).Observe(seconds);
  };
  ModelRegistry models(mo);
  const std::string wait = cfg.batcher.max_wait_ms >= 0 ? "up to " + std::to_string(static_cast<int>(cfg.batcher.max_wait_ms)) + " ms"
                                                        : std::string("up to a tenth of each model's measured pass time");
  std::string precision = cfg.batcher.precision;
  for (const auto& e : models.list()) {
    if (e.precision != cfg.batcher.precision) precision += ", " + e.ref() + " in " + e.precision;
  }
  log_info("batching: up to %d images / %d texts per pass in %s, waiting %s for company",
           cfg.batcher.max_batch_images, cfg.batcher.max_batch_texts, precision.c_str(), wait.c_str());
  log_info("%zu model(s) registered, default %s", models.list().size(),
           models.default_ref().empty() ? "(none)" : models.default_ref().c_str());
  IndexRegistry indexes(cfg.data_dir);
  WorkerPool pool(cfg.preprocess_threads);
  MemoryBudget decode_budget(cfg.decode_memory_mb << 20);
  log_info("image decodes: %d worker(s) sharing %lld MiB; images up to %lld pixels", pool.size(),
           static_cast<long long>(cfg.decode_memory_mb), static_cast<long long>(cfg.max_image_pixels));
  EmbeddingEngine engine(models, pool, decode_budget, cfg.batcher, [&embedding_metrics](const BatchStats& s) { embedding_metrics.record_batch(s); });
  if (engine.pass_threads() > 0) {
    log_info("forward passes: up to %d at once on the CPU, %d intra-op thread(s) each", engine.passes(),
             engine.pass_threads());
  } else {
    log_info("forward passes: %d at a time on %s", engine.passes(), device.c_str());
  }

  GaugeSeries queue_items(
      metrics_registry.gauge("refinery_queue_items", "Items waiting in a batcher queue", {"queue"}));
  auto& registered = metrics_registry.gauge("refinery_models_registered", "Models in the registry");
  auto& loaded = metrics_registry.gauge("refinery_models_loaded", "Models whose weights are loaded");
  GaugeSeries model_bytes(metrics_registry.gauge("refinery_model_memory_bytes", "Weights of a loaded model", {"model"}));
  GaugeSeries index_items(metrics_registry.gauge("refinery_index_items", "Items in a vector index", {"index"}));
  GaugeSeries index_log_bytes(metrics_registry.gauge(
      "refinery_index_log_bytes", "Bytes in a vector index's write-ahead log since its last snapshot", {"index"}));
  GaugeSeries index_snapshot_bytes(
      metrics_registry.gauge("refinery_index_snapshot_bytes", "Bytes of a vector index's last snapshot", {"index"}));
  GaugeSeries index_checkpoint_seconds(metrics_registry.gauge(
      "refinery_index_last_checkpoint_seconds", "How long a vector index's last snapshot took to write (writes wait meanwhile)",
      {"index"}));
  auto& decode_bytes = metrics_registry.gauge("refinery_decode_memory_bytes",
                                              "Bytes leased by image decodes in flight (of --decode-memory-mb)");
  metrics_registry.gauge("refinery_queue_capacity_items", "Items a batcher queue holds before calls are refused (--max-queue-items)")
      .with()
      .Set(cfg.batcher.max_queue_items);
  auto& disk_free = metrics_registry.gauge("refinery_data_disk_free_bytes", "Free bytes on the file system of --data-dir");
  auto& disk_size = metrics_registry.gauge("refinery_data_disk_size_bytes", "Size of the file system of --data-dir");
  metrics_registry.add_collector([&] {
    queue_items.set(engine.queue_depths());
    embedding_metrics.keep_wait_budgets(engine.lanes());
    registered.with().Set(static_cast<double>(models.list().size()));
    const auto in_memory = models.loaded_models();
    loaded.with().Set(static_cast<double>(in_memory.size()));
    model_bytes.set(in_memory);
    std::map<std::string, double> sizes, log_bytes, snapshot_bytes, checkpoint_seconds;
    for (const auto& info : indexes.list()) {
      sizes[info.name] = static_cast<double>(info.size);
      log_bytes[info.name] = static_cast<double>(info.log_bytes);
      snapshot_bytes[info.name] = static_cast<double>(info.snapshot_bytes);
      checkpoint_seconds[info.name] = info.last_checkpoint_seconds;
    }
    index_items.set(sizes);
    index_log_bytes.set(log_bytes);
    index_snapshot_bytes.set(snapshot_bytes);
    index_checkpoint_seconds.set(checkpoint_seconds);
    decode_bytes.with().Set(static_cast<double>(decode_budget.in_use()));
    disk_free.with().Set(static_cast<double>(free_disk_bytes(cfg.data_dir)));
    disk_size.with().Set(static_cast<double>(disk_size_bytes(cfg.data_dir)));
  });

  const ServerPathRoots roots = make_path_roots(cfg);
  log_info("client paths: data under %s; imports from %s; exports to %s%s", roots.data.describe().c_str(),
           roots.imports.describe().c_str(), roots.exports.describe().c_str(),
           cfg.security.allow_pickle ? "; TorchScript/pickle imports allowed" : "");
  JobMetrics job_metrics(metrics_registry);
  JobManagerOptions jo;
  jo.data_dir = cfg.data_dir;
  jo.device = device;
  jo.max_queued_jobs = cfg.max_queued_jobs;
  jo.default_checkpoint_every = cfg.checkpoint_every;
  jo.max_step_events = cfg.max_step_events;
  jo.data_roots = roots.data;
  JobManager jobs(jo, models, &job_metrics);
  jobs.start();

  std::unique_ptr<AccessControl> access;
  if (!cfg.security.auth_tokens.empty()) access = std::make_unique<AccessControl>(cfg.security.auth_tokens);
  log_info("security: %s", describe_security(cfg, access.get()).c_str());
  const CallGuard guard(&rpc_metrics, access.get());
  ModelServiceImpl model_service(models, guard, {roots.imports, roots.exports, cfg.security.allow_pickle});
  JobServiceImpl job_service(jobs, guard);
  EmbeddingServiceImpl embedding_service(engine, cfg, guard, &embedding_metrics);
  IndexServiceImpl index_service(indexes, engine, models, cfg, guard);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(cfg.listen, server_credentials(cfg.security), &port);
  builder.SetMaxReceiveMessageSize(cfg.max_message_mb << 20);
  builder.SetMaxSendMessageSize(cfg.max_message_mb << 20);
  grpc::ResourceQuota quota("refineryd");
  quota.SetMaxThreads(cfg.max_rpc_threads);
  builder.SetResourceQuota(quota);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, cfg.idle_rpc_threads);
  const auto ms = [](double s) { return static_cast<int>(std::min(s * 1000.0, 2e9)); };
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, cfg.max_streams_per_connection);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ms(cfg.keepalive_s));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  if (cfg.max_connection_idle_s > 0) builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, ms(cfg.max_connection_idle_s));
  if (cfg.max_connection_age_s > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, ms(cfg.max_connection_age_s));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, ms(cfg.shutdown_grace_s));
  }
  builder.RegisterService(&model_service);
  builder.RegisterService(&embedding_service);
  builder.RegisterService(&index_service);
  builder.RegisterService(&job_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    throw invalid_argument("cannot listen on " + cfg.listen + " (--listen): address in use or invalid" +
                           (cfg.security.tls() ? ", or the TLS certificate and key do not match" : ""));
  }
  std::unique_ptr<MetricsHttpServer> metrics_http;
  if (!cfg.metrics_listen.empty()) {
    HttpTlsOptions metrics_tls;
    if (cfg.metrics_tls) {
      metrics_tls = {cfg.security.tls_cert, cfg.security.tls_key, cfg.security.tls_client_ca};
    }
    metrics_http = std::make_unique<MetricsHttpServer>(metrics_registry, cfg.metrics_listen, metrics_tls);
    log_info("metrics on %s://%s/metrics%s", cfg.metrics_tls ? "https" : "http", cfg.metrics_listen.c_str(),
             cfg.metrics_tls && cfg.security.mtls() ? " (client certificates required)" : "");
  }
  // The HTTP API calls the services above through an in-process channel:
  // the same tokens, limits, metrics and errors as a gRPC client gets.
  std::atomic<bool> draining{false};
  std::unique_ptr<HttpApi> http_api;
  std::unique_ptr<HttpListener> http_listener;
  if (!cfg.http_listen.empty()) {
    grpc::ChannelArguments channel_args;
    channel_args.SetMaxReceiveMessageSize(cfg.max_message_mb << 20);
    channel_args.SetMaxSendMessageSize(cfg.max_message_mb << 20);
    HttpApiOptions api_options;
    api_options.max_request_items = cfg.max_request_items;
    api_options.not_ready_reason = [&]() -> std::string {
      if (draining) return "shutting down";
      if (models.list().empty()) return "no model registered (--models-dir, or `refinery models import`)";
      return "";
    };
    http_api = std::make_unique<HttpApi>(server->InProcessChannel(channel_args), api_options);
    HttpListenerOptions listener;
    listener.name = "HTTP API";
    listener.threads = cfg.http_threads;
    listener.read_timeout_s = 60;
    listener.write_timeout_s = 60;
    listener.keep_alive_requests = 100;
    // Base64 makes images a third larger, JSON numbers embeddings larger still.
    listener.max_body_bytes = static_cast<size_t>(cfg.max_message_mb) << 21;
    if (cfg.security.tls()) listener.tls = {cfg.security.tls_cert, cfg.security.tls_key, cfg.security.tls_client_ca};
    http_listener = std::make_unique<HttpListener>(cfg.http_listen, listener,
                                                   [&](httplib::Server& s) { http_api->install(s); });
    log_info("HTTP API on %s://%s (port %d): POST /v1/embeddings, /openapi.json", http_listener->tls() ? "https" : "http",
             cfg.http_listen.c_str(), http_listener->port());
  }
  log_info("serving gRPC on %s (port %d)", cfg.listen.c_str(), port);

  int sig = 0;
  for (;;) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP) break;
    if (!access) {
      log_info("SIGHUP: no --auth-tokens file to reload");
      continue;
    }
    try {
      access->reload();
      log_info("SIGHUP: reloaded %s: %s", access->tokens_file().c_str(), access->summary().c_str());
    } catch (const std::exception& e) {
      log_error("SIGHUP: kept the previous tokens: %s", e.what());
    }
  }
  log_info("received %s: draining in-flight calls (up to %.0f s)", strsignal(sig), cfg.shutdown_grace_s);
  draining = true;  // /ready answers 503
  server->GetHealthCheckService()->Shutdown();
  // A running job checkpoints where it is and resumes at the next start;
  // watchers get UNAVAILABLE and reconnect.
  jobs.shutdown();
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(cfg.shutdown_grace_s * 1000));
  server->Shutdown(deadline);  // waits for running handlers (and their index writes)
  http_listener.reset();       // its calls have ended with the server's
  engine.shutdown();
  metrics_http.reset();
  log_info("stopped");
  return 0;
}

}  // namespace
}  // namespace refinery

int main(int argc, char** argv) {
  try {
    return refinery::run(argc, argv);
  } catch (const std::exception& e) {
    refinery::log_error("refineryd: %s", e.what());
    return 1;
  }
}
