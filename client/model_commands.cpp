// `refinery models list|show|import|export|delete`: the server's model
// registry. Paths in import/export are on the server's disk.
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "client/commands.h"
#include "client/eval_display.h"
#include "client/job_display.h"
#include "client/output.h"
#include "refinery/proto_json.h"
#include "client/server_connection.h"
#include "refinery/v1/model.grpc.pb.h"

namespace refinery::client {
namespace {

struct ImportParams {
  std::string path, name, model_config;
  std::string precision;  // fp32 | bf16 | int8; empty: the server's rule
  bool make_default = false;
};

struct ExportParams {
  std::string model, path;
  std::string format = "safetensors";  // safetensors | hf
  std::string precision = "fp32";      // fp32 | fp16
};

std::string human_count(int64_t n) {
  if (n >= 1000000000) return format_fixed(n / 1e9, 2) + "B";
  if (n >= 1000000) return format_fixed(n / 1e6, 2) + "M";
  if (n >= 1000) return format_fixed(n / 1e3, 1) + "k";
  return std::to_string(n);
}

std::string human_bytes(int64_t n) {
  if (n >= (int64_t(1) << 30)) return format_fixed(n / double(1 << 30), 2) + " GiB";
  if (n >= (int64_t(1) << 20)) return format_fixed(n / double(1 << 20), 1) + " MiB";
  if (n >= 1024) return format_fixed(n / 1024.0, 1) + " KiB";
  return std::to_string(n) + " B";
}

void print_model(const v1::ModelInfo& m) {
  const auto& a = m.architecture();
  std::cout << m.ref() << (m.is_default() ? " (default)" : "") << '\n'
            << "  path:        " << m.path() << '\n'
            << "  format:      " << m.format() << '\n'
            << "  precision:   " << m.precision() << '\n'
            << "  loaded:      " << (m.loaded() ? "yes" : "no") << ", memory " << human_bytes(m.memory_bytes()) << '\n'
            << "  parameters:  " << human_count(m.parameters()) << '\n'
            << "  arch:        " << (a.name().empty() ? "(custom)" : a.name()) << ", embed dim " << a.embed_dim()
            << '\n'
            << "  vision:      " << a.image_size() << "px, patch " << a.patch_size() << ", width " << a.vision_width()
            << ", " << a.vision_layers() << " layers, " << a.vision_heads() << " heads\n"
            << "  text:        width " << a.text_width() << ", " << a.text_layers() << " layers, " << a.text_heads()
            << " heads, context " << a.context_length() << ", vocab " << a.vocab_size() << '\n';
  const auto& l = m.lineage();
  if (!l.base_model().empty()) {
    std::cout << "  lineage:     " << l.method() << " from " << l.base_model() << " on " << l.data() << " (job "
              << l.job_id() << ")\n";
    const std::map<std::string, double> metrics(l.metrics().begin(), l.metrics().end());
    for (const auto& [k, v] : metrics) std::cout << "    " << k << " = " << v << '\n';
  }
  // What refining gained or lost: the refine job's suites on the base, then
  // on this model; then every other suite this model was evaluated on.
  std::set<std::string> compared;
  for (const auto& base : l.base_evaluations()) {
    for (const auto& result : l.evaluations()) {
      if (result.suite() != base.suite()) continue;
      std::cout << "  evaluation (" << format_local_time(result.finished_unix_ms()) << "):\n";
      print_eval_comparison(base, result, "base " + base.model(), "refined " + result.model(), "  ");
      compared.insert(result.suite());
    }
  }
  for (const auto& r : l.evaluations()) {
    if (compared.count(r.suite())) continue;
    std::cout << "  evaluation (" << format_local_time(r.finished_unix_ms()) << "):\n";
    print_eval_report(r, "    ");
  }
}

int list_models(const ServerConnection& c) {
  auto stub = v1::ModelService::NewStub(c.channel());
  v1::ListModelsResponse response;
  check_status(stub->ListModels(c.context().get(), v1::ListModelsRequest(), &response));
  if (c.options().json) {
    print_json(proto_to_json(response));
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& m : response.models()) {
    rows.push_back({m.ref() + (m.is_default() ? " *" : ""), m.format(), std::to_string(m.architecture().embed_dim()),
                    human_count(m.parameters()), m.precision(), m.loaded() ? "yes" : "no", m.path()});
  }
  if (rows.empty()) {
    std::cout << "no models registered (import one with `refinery models import PATH`)\n";
    return 0;
  }
  print_table({"MODEL", "FORMAT", "DIM", "PARAMS", "PRECISION", "LOADED", "PATH"}, rows);
  return 0;
}

int show_model(const ServerConnection& c, const std::string& model) {
  auto stub = v1::ModelService::NewStub(c.channel());
  v1::GetModelRequest request;
  request.set_model(model);
  v1::ModelInfo info;
  check_status(stub->GetModel(c.context().get(), request, &info));
  if (c.options().json) {
    print_json(proto_to_json(info));
  } else {
    print_model(info);
  }
  return 0;
}

int import_model(const ServerConnection& c, const ImportParams& p) {
  auto stub = v1::ModelService::NewStub(c.channel());
  v1::ImportModelRequest request;
  request.set_path(p.path);
  request.set_name(p.name);
  request.set_model_config_path(p.model_config);
  request.set_make_default(p.make_default);
  request.set_precision(p.precision);
  v1::ModelInfo info;
  check_status(stub->ImportModel(c.context().get(), request, &info));
  if (c.options().json) {
    print_json(proto_to_json(info));
  } else {
    std::cout << "imported " << p.path << " as " << info.ref() << " (" << info.precision()
              << (info.is_default() ? ", default" : "") << ")\n";
  }
  return 0;
}

int export_model(const ServerConnection& c, const ExportParams& p) {
  auto stub = v1::ModelService::NewStub(c.channel());
  v1::ExportModelRequest request;
  request.set_model(p.model);
  request.set_path(p.path);
  request.set_format(p.format);
  request.set_precision(p.precision);
  v1::ExportModelResponse response;
  check_status(stub->ExportModel(c.context().get(), request, &response));
  if (c.options().json) {
    print_json(proto_to_json(response));
  } else {
    std::cout << "exported " << p.model << " to " << response.path() << " (" << human_bytes(response.bytes())
              << ", " << p.format << ", " << p.precision << ")\n";
  }
  return 0;
}

int delete_model(const ServerConnection& c, const std::string& model) {
  auto stub = v1::ModelService::NewStub(c.channel());
  v1::DeleteModelRequest request;
  request.set_model(model);
  v1::DeleteModelResponse response;
  check_status(stub->DeleteModel(c.context().get(), request, &response));
  if (c.options().json) {
    print_json({{"deleted", model}});
  } else {
    std::cout << "deleted " << model << " (the checkpoint file is left in place)\n";
  }
  return 0;
}

}  // namespace

void add_model_commands(CLI::App& app, Command& command) {
  auto* models = app.add_subcommand("models", "The server's model registry");
  models->require_subcommand(1);

  models->add_subcommand("list", "Registered models (* marks the default)")->callback([&command] {
    command.run = [&command] { return list_models(ServerConnection(command.options)); };
  });

  auto* show = models->add_subcommand("show", "One model's architecture, state and lineage");
  auto model = std::make_shared<std::string>();
  show->add_option("model", *model, "NAME or NAME@VERSION (default: the server's default model)");
  show->callback([&command, model] {
    command.run = [&command, model] { return show_model(ServerConnection(command.options), *model); };
  });

  auto* import = models->add_subcommand("import", "Register a checkpoint that is on the server's disk");
  auto ip = std::make_shared<ImportParams>();
  import->add_option("path", ip->path, "Checkpoint path on the server")->required();
  import->add_option("--name", ip->name, "Registry name (default: the file name; an existing name gets a new version)");
  import->add_option("--model-config", ip->model_config, "open_clip or HF config JSON overriding the inferred architecture");
  import->add_flag("--default", ip->make_default, "Make it the server's default model");
  import->add_option("--precision", ip->precision,
                     "fp32, bf16 or int8 for its forward passes (default: the server's --model-precision or --precision)")
      ->check(CLI::IsMember({"fp32", "bf16", "int8"}));
  import->callback([&command, ip] {
    command.run = [&command, ip] { return import_model(ServerConnection(command.options), *ip); };
  });

  auto* exp = models->add_subcommand("export", "Write a registered model to a path on the server's disk");
  auto ep = std::make_shared<ExportParams>();
  exp->add_option("model", ep->model, "NAME or NAME@VERSION")->required();
  exp->add_option("path", ep->path, "Output path on the server")->required();
  exp->add_option("--format", ep->format, "safetensors or hf (a Hugging Face CLIPModel folder)")
      ->check(CLI::IsMember({"safetensors", "hf"}))
      ->capture_default_str();
  exp->add_option("--precision", ep->precision, "fp32 or fp16")
      ->check(CLI::IsMember({"fp32", "fp16"}))
      ->capture_default_str();
  exp->callback([&command, ep] {
    command.run = [&command, ep] { return export_model(ServerConnection(command.options), *ep); };
  });

  auto* del = models->add_subcommand("delete", "Unregister a model version (its file is kept)");
  auto dm = std::make_shared<std::string>();
  del->add_option("model", *dm, "NAME or NAME@VERSION")->required();
  del->callback([&command, dm] {
    command.run = [&command, dm] { return delete_model(ServerConnection(command.options), *dm); };
  });
}

}  // namespace refinery::client
