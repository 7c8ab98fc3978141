// refinery: the Refinery client. Talks to refineryd over gRPC: health,
// models, embeddings, zero-shot classification, ranking, vector indexes and
// a load generator. Global flags may come before or after the verb.
#include <CLI/CLI.hpp>
#include <iostream>

#include "client/client_errors.h"
#include "client/commands.h"
#include "client/output.h"

namespace refinery::client {
namespace {

int run(int argc, char** argv) {
  Command command;
  CLI::App app{"refinery: the Refinery client (CLIP embeddings, classification, ranking, vector search)."};
  app.set_version_flag("--version", std::string("refinery ") + REFINERY_VERSION);
  app.require_subcommand(1);
  // Same shape as every other error, so scripts grep one prefix.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("refinery: error: ") + e.what() + "\nRun with --help for more information.\n";
  });
  // Inherited by every subcommand created below: lets `refinery models list
  // --json` find the top-level --json.
  app.fallthrough();
  app.add_option("--server", command.options.server, "refineryd address HOST:PORT")
      ->envname("REFINERY_SERVER")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)  // the last one wins, as in a shell alias + override
      ->capture_default_str();
  app.add_flag("--json", command.options.json, "Print results as JSON (one object per line)");
  app.add_option("--timeout", command.options.timeout_s, "Deadline of each call in seconds (0 = none)")
      ->check(CLI::NonNegativeNumber)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->capture_default_str();
  auto* security = "Security";
  app.add_option("--token", command.options.token, "Bearer token for a server with --auth-tokens")
      ->envname("REFINERY_TOKEN")
      ->group(security);
  app.add_flag("--tls", command.options.tls, "Connect over TLS, trusting the system's CA certificates")->group(security);
  app.add_option("--tls-ca", command.options.tls_ca, "Connect over TLS, trusting this PEM CA certificate")
      ->envname("REFINERY_TLS_CA")
      ->group(security);
  app.add_option("--tls-cert", command.options.tls_cert, "This client's PEM certificate (mutual TLS)")
      ->envname("REFINERY_TLS_CERT")
      ->group(security);
  app.add_option("--tls-key", command.options.tls_key, "Its PEM private key")
      ->envname("REFINERY_TLS_KEY")
      ->group(security);
  app.add_option("--tls-server-name", command.options.tls_server_name,
                 "Name the server's certificate must carry, when it differs from the --server host")
      ->group(security);

  add_health_command(app, command);
  add_model_commands(app, command);
  add_embed_commands(app, command);
  add_index_commands(app, command);
  add_bench_command(app, command);
  add_job_commands(app, command);
  add_eval_commands(app, command);
  add_sweep_commands(app, command);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help, the version, or the parse error
    return code == 0 ? 0 : kExitUsage;
  }
  if (!command.run) {
    std::cerr << "refinery: error: choose a verb\n" << app.help();
    return kExitUsage;
  }
  try {
    return command.run();
  } catch (...) {
    return report_error(std::current_exception(), command.options.server);
  }
}

}  // namespace
}  // namespace refinery::client

int main(int argc, char** argv) { return refinery::client::run(argc, argv); }
