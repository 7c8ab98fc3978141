// `refinery embed text|image`, `classify` and `rank`: the EmbeddingService.
// Long inputs are split into calls of --items-per-call items (the server
// caps items per call); the rows come back in input order either way.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <iostream>
#include <memory>

#include "client/client_errors.h"
#include "client/commands.h"
#include "client/input_files.h"
#include "client/output.h"
#include "refinery/proto_json.h"
#include "client/request_chunks.h"
#include "client/server_connection.h"
#include "core/base/clock.h"
#include "core/base/error.h"
#include "core/safetensors/safetensors.h"
#include "refinery/v1/embedding.grpc.pb.h"

namespace refinery::client {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kDefaultItemsPerCall = 64;

struct EmbedParams {
  std::vector<std::string> inputs;  // texts, or image paths
  std::string texts_file;           // texts only: a JSON array of strings
  std::string model, output;
  bool normalize = false;
  bool no_truncate = false;         // texts only
  int items_per_call = kDefaultItemsPerCall;
};

struct ClassifyParams {
  std::vector<std::string> images, labels, templates;
  std::string templates_file, dataset, model;
  int top_k = 5;
  int items_per_call = kDefaultItemsPerCall;
};

struct RankParams {
  std::string image, text, model;
  bool has_image = false, has_text = false;
  std::vector<std::string> texts, images;
  std::string score = "softmax";  // softmax | cosine
  int top_k = 0;
};

// Server time of several calls: stages and totals add up, the batch is the
// largest seen.
void add_timing(v1::Timing& total, const v1::Timing& t) {
  total.set_preprocess_ms(total.preprocess_ms() + t.preprocess_ms());
  total.set_queue_ms(total.queue_ms() + t.queue_ms());
  total.set_inference_ms(total.inference_ms() + t.inference_ms());
  total.set_total_ms(total.total_ms() + t.total_ms());
  total.set_batch_size(std::max(total.batch_size(), t.batch_size()));
}

void merge_embeddings(v1::EmbedResponse& total, const v1::EmbedResponse& part, const std::string& context) {
  if (total.model().empty()) total.set_model(part.model());
  auto* m = total.mutable_embeddings();
  const auto& p = part.embeddings();
  if (m->rows() > 0 && p.dim() != m->dim()) {
    throw internal_error("the server answered " + std::to_string(p.dim()) + "-d rows after " +
                         std::to_string(m->dim()) + "-d ones (" + context + ")");
  }
  if (static_cast<int64_t>(p.values_size()) != int64_t(p.rows()) * p.dim()) {
    throw internal_error("the server's matrix holds " + std::to_string(p.values_size()) + " values for " +
                         std::to_string(p.rows()) + " x " + std::to_string(p.dim()) + " (" + context + ")");
  }
  m->set_dim(p.dim());
  m->set_rows(m->rows() + p.rows());
  m->mutable_values()->Add(p.values().begin(), p.values().end());
  add_timing(*total.mutable_timing(), part.timing());
}

// "items" names the rows (the texts, or the image paths), so `refinery index
// add --from` can take the file as it is.
void write_embeddings(const std::string& path, const v1::EmbedResponse& r, const std::string& modality,
                      const std::vector<std::string>& items) {
  const auto& m = r.embeddings();
  SafetensorsWriter writer;
  writer.add_float32("embeddings", {m.rows(), m.dim()}, m.values().data());
  writer.set_metadata("model", r.model());
  writer.set_metadata("modality", modality);
  writer.set_metadata("items", nlohmann::json(items).dump());
  writer.write(path);
}

void report_embeddings(const ServerConnection& c, const EmbedParams& p, const v1::EmbedResponse& r,
                       const std::string& modality, const std::vector<std::string>& items, double wall_ms) {
  const auto& m = r.embeddings();
  if (!p.output.empty()) write_embeddings(p.output, r, modality, items);
  if (c.options().json) {
    if (p.output.empty()) {
      print_json(proto_to_json(r));
    } else {
      print_json({{"model", r.model()}, {"rows", m.rows()}, {"dim", m.dim()}, {"output", p.output},
                  {"timing", proto_to_json(r.timing())}});
    }
    return;
  }
  const std::string shape = std::to_string(m.rows()) + " x " + std::to_string(m.dim());
  if (!p.output.empty()) {
    std::cout << "wrote " << shape << " " << modality << " embeddings (" << r.model() << ") to " << p.output << '\n';
  } else {
    std::cout << shape << " " << modality << " embeddings from " << r.model()
              << " (use --output F.safetensors or --json for the values)\n";
  }
  std::cout << "  " << format_fixed(wall_ms, 1) << " ms wall; server " << describe_timing(r.timing()) << '\n';
}

int embed_texts(const ServerConnection& c, const EmbedParams& p) {
  std::vector<std::string> texts = p.inputs;
  if (!p.texts_file.empty()) texts = read_texts_file(p.texts_file);
  if (texts.empty()) throw UsageError("embed text: give TEXT arguments or --texts FILE.json");
  std::vector<size_t> bytes;
  for (const auto& t : texts) bytes.push_back(t.size() + 8);
  const auto start = Clock::now();
  auto stub = v1::EmbeddingService::NewStub(c.channel());
  v1::EmbedResponse total;
  const auto chunks = plan_chunks(bytes, p.items_per_call);
  ProgressBar bar(static_cast<int64_t>(texts.size()), call_progress("embedding texts", "texts", chunks.size()));
  for (const auto& chunk : chunks) {
    v1::EmbedTextRequest request;
    request.set_model(p.model);
    request.set_normalize(p.normalize);
    request.set_no_truncate(p.no_truncate);
    for (size_t i = chunk.begin; i < chunk.end; ++i) request.add_texts(texts[i]);
    v1::EmbedResponse part;
    const std::string context = chunk_context(chunk, texts.size());
    check_status(stub->EmbedText(c.context().get(), request, &part), context);
    merge_embeddings(total, part, context);
    bar.update(static_cast<int64_t>(chunk.end));
  }
  bar.finish();
  report_embeddings(c, p, total, "text", texts, ms_since(start));
  return 0;
}

int embed_images(const ServerConnection& c, const EmbedParams& p) {
  std::vector<size_t> bytes;
  for (const auto& path : p.inputs) bytes.push_back(image_file_size(path));
  const auto start = Clock::now();
  auto stub = v1::EmbeddingService::NewStub(c.channel());
  v1::EmbedResponse total;
  const auto chunks = plan_chunks(bytes, p.items_per_call);
  ProgressBar bar(static_cast<int64_t>(p.inputs.size()), call_progress("embedding images", "images", chunks.size()));
  for (const auto& chunk : chunks) {
    v1::EmbedImageRequest request;
    request.set_model(p.model);
    request.set_normalize(p.normalize);
    for (size_t i = chunk.begin; i < chunk.end; ++i) *request.add_images() = read_image(p.inputs[i]);
    v1::EmbedResponse part;
    const std::string context = chunk_context(chunk, p.inputs.size());
    check_status(stub->EmbedImage(c.context().get(), request, &part), context);
    merge_embeddings(total, part, context);
    bar.update(static_cast<int64_t>(chunk.end));
  }
  bar.finish();
  report_embeddings(c, p, total, "image", p.inputs, ms_since(start));
  return 0;
}

std::string lower(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::vector<std::string> string_list(const json& j, const std::string& where) {
  if (!j.is_array()) throw invalid_argument(where + " must be an array of strings");
  std::vector<std::string> out;
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_string()) throw invalid_argument(where + "[" + std::to_string(i) + "] is not a string");
    out.push_back(j[i].get<std::string>());
  }
  return out;
}

// Fills labels and templates from `{dataset: {"classes": [...], "templates":
// [...]}}` where the command line left them out; flags win.
void apply_templates_file(ClassifyParams& p) {
  if (p.templates_file.empty()) return;
  const json j = read_json_file(p.templates_file);
  if (!j.is_object() || j.empty()) {
    throw invalid_argument(p.templates_file + ": must be an object {dataset: {\"classes\": [...], \"templates\": [...]}}");
  }
  std::string names;
  for (const auto& [name, _] : j.items()) names += (names.empty() ? "" : ", ") + name;
  std::string key;
  if (p.dataset.empty()) {
    if (j.size() != 1) {
      throw UsageError(p.templates_file + " holds " + std::to_string(j.size()) +
                       " datasets; choose one with --dataset (" + names + ")");
    }
    key = j.begin().key();
  } else {
    for (const auto& [name, _] : j.items()) {
      if (lower(name) == lower(p.dataset)) key = name;
    }
    if (key.empty()) throw not_found("dataset '" + p.dataset + "' is not in " + p.templates_file + " (it has: " + names + ")");
  }
  const json& entry = j.at(key);
  const std::string where = p.templates_file + ": " + key;
  if (!entry.is_object()) throw invalid_argument(where + " must be an object with \"classes\" and \"templates\"");
  if (p.labels.empty() && entry.contains("classes")) p.labels = string_list(entry["classes"], where + ".classes");
  if (p.templates.empty() && entry.contains("templates")) {
    p.templates = string_list(entry["templates"], where + ".templates");
  }
}

int classify(const ServerConnection& c, ClassifyParams p) {
  apply_templates_file(p);
  if (p.labels.empty()) throw UsageError("classify: give --labels a,b,c (or --templates-file F --dataset D)");
  for (size_t i = 0; i < p.labels.size(); ++i) {
    if (p.labels[i].empty()) throw UsageError("classify: label " + std::to_string(i) + " of --labels is empty");
  }
  for (const auto& t : p.templates) {
    if (t.find("{}") == std::string::npos) throw UsageError("--template '" + t + "' has no {} for the label");
  }
  std::vector<size_t> bytes;
  for (const auto& path : p.images) bytes.push_back(image_file_size(path));
  auto stub = v1::EmbeddingService::NewStub(c.channel());
  v1::ClassifyResponse total;
  const auto chunks = plan_chunks(bytes, p.items_per_call);
  ProgressBar bar(static_cast<int64_t>(p.images.size()), call_progress("classifying images", "images", chunks.size()));
  for (const auto& chunk : chunks) {
    v1::ClassifyRequest request;
    request.set_model(p.model);
    for (size_t i = chunk.begin; i < chunk.end; ++i) *request.add_images() = read_image(p.images[i]);
    for (const auto& l : p.labels) request.add_labels(l);
    for (const auto& t : p.templates) request.add_templates(t);
    request.set_top_k(p.top_k);
    v1::ClassifyResponse part;
    check_status(stub->Classify(c.context().get(), request, &part), chunk_context(chunk, p.images.size()));
    if (total.model().empty()) total.set_model(part.model());
    for (const auto& r : part.results()) *total.add_results() = r;
    add_timing(*total.mutable_timing(), part.timing());
    bar.update(static_cast<int64_t>(chunk.end));
  }
  bar.finish();
  if (c.options().json) {
    print_json(proto_to_json(total));
    return 0;
  }
  for (const auto& r : total.results()) {
    std::cout << r.image() << '\n';
    for (const auto& l : r.labels()) {
      std::cout << "  " << format_fixed(l.probability(), 4) << "  (cosine " << format_fixed(l.cosine(), 4) << ")  "
                << l.label() << '\n';
    }
  }
  std::cout << "model " << total.model() << "; server " << describe_timing(total.timing()) << '\n';
  return 0;
}

int rank(const ServerConnection& c, const RankParams& p) {
  if (p.has_image == p.has_text) throw UsageError("rank: give one query, --image IMG or --text QUERY");
  v1::RankRequest request;
  request.set_model(p.model);
  request.set_score(p.score == "cosine" ? v1::SCORE_MODE_COSINE : v1::SCORE_MODE_SOFTMAX);
  request.set_top_k(p.top_k);
  if (p.has_image) {
    if (p.texts.empty()) throw UsageError("rank --image: give the candidate texts with --texts T1 T2 ...");
    if (!p.images.empty()) throw UsageError("rank --image ranks texts: use --texts, not --images");
    *request.mutable_image() = read_image(p.image);
    for (const auto& t : p.texts) request.add_texts(t);
  } else {
    if (p.images.empty()) throw UsageError("rank --text: give the candidate images with --images IMG...");
    if (!p.texts.empty()) throw UsageError("rank --text ranks images: use --images, not --texts");
    for (const auto& path : p.images) image_file_size(path);
    request.set_text(p.text);
    for (const auto& path : p.images) *request.add_images() = read_image(path);
  }
  auto stub = v1::EmbeddingService::NewStub(c.channel());
  v1::RankResponse response;
  check_status(stub->Rank(c.context().get(), request, &response));
  if (c.options().json) {
    print_json(proto_to_json(response));
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (int i = 0; i < response.items_size(); ++i) {
    const auto& item = response.items(i);
    rows.push_back({std::to_string(i + 1), format_fixed(item.score(), 4), item.name()});
  }
  print_table({"#", p.score == "cosine" ? "COSINE" : "PROB", p.has_image ? "TEXT" : "IMAGE"}, rows);
  std::cout << "model " << response.model() << "; server " << describe_timing(response.timing()) << '\n';
  return 0;
}

void add_embed_options(CLI::App* sub, EmbedParams& p) {
  sub->add_option("--model", p.model, "NAME or NAME@VERSION (default: the server's default model)");
  sub->add_flag("--normalize", p.normalize, "L2-normalise each row (default: raw projected features)");
  sub->add_option("--output,-o", p.output, "Write embeddings [N, D] float32 (key 'embeddings') to F.safetensors");
  sub->add_option("--items-per-call", p.items_per_call, "Items sent per call (the server caps them)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

}  // namespace

void add_embed_commands(CLI::App& app, Command& command) {
  auto* embed = app.add_subcommand("embed", "Embed texts or images");
  embed->require_subcommand(1);

  auto* text = embed->add_subcommand("text", "Embed texts (arguments, or --texts FILE.json)");
  auto tp = std::make_shared<EmbedParams>();
  auto* text_args = text->add_option("TEXT", tp->inputs, "Texts to embed");
  text->add_option("--texts", tp->texts_file, "A JSON array of strings")->excludes(text_args);
  text->add_flag("--no-truncate", tp->no_truncate, "Reject texts over the context length instead of truncating");
  add_embed_options(text, *tp);
  text->callback([&command, tp] {
    command.run = [&command, tp] { return embed_texts(ServerConnection(command.options), *tp); };
  });

  auto* image = embed->add_subcommand("image", "Embed image files (JPEG, PNG, WebP, BMP, TIFF)");
  auto ip = std::make_shared<EmbedParams>();
  image->add_option("IMG", ip->inputs, "Image files")->required();
  add_embed_options(image, *ip);
  image->callback([&command, ip] {
    command.run = [&command, ip] { return embed_images(ServerConnection(command.options), *ip); };
  });

  auto* cls = app.add_subcommand("classify", "Zero-shot classification of images against labels");
  auto cp = std::make_shared<ClassifyParams>();
  cls->add_option("--image", cp->images, "Image file (repeatable)")->required();
  cls->add_option("--labels", cp->labels, "Comma-separated labels: a,b,c")->delimiter(',');
  cls->add_option("--template", cp->templates, "Prompt with {} for the label (repeatable; default \"a photo of a {}.\")");
  auto* tf = cls->add_option("--templates-file", cp->templates_file,
                             "JSON {dataset: {\"classes\": [...], \"templates\": [...]}} (e.g. assets/zeroshot_prompts.json)");
  cls->add_option("--dataset", cp->dataset, "Which dataset of --templates-file (its classes stand in for --labels)")
      ->needs(tf);
  cls->add_option("--top-k", cp->top_k, "Labels shown per image, best first (0 = all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cls->add_option("--model", cp->model, "NAME or NAME@VERSION (default: the server's default model)");
  cls->add_option("--items-per-call", cp->items_per_call, "Images sent per call")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cls->callback([&command, cp] {
    command.run = [&command, cp] { return classify(ServerConnection(command.options), *cp); };
  });

  auto* rk = app.add_subcommand("rank", "Rank texts against an image (--image), or images against a text (--text)");
  auto rp = std::make_shared<RankParams>();
  auto* q_image = rk->add_option("--image", rp->image, "Query image; candidates from --texts");
  auto* q_text = rk->add_option("--text", rp->text, "Query text; candidates from --images");
  q_image->excludes(q_text);
  rk->add_option("--texts", rp->texts, "Candidate texts");
  rk->add_option("--images", rp->images, "Candidate image files");
  rk->add_option("--score", rp->score, "softmax (CLIP probabilities) or cosine")
      ->check(CLI::IsMember({"softmax", "cosine"}))
      ->capture_default_str();
  rk->add_option("--top-k", rp->top_k, "Candidates shown, best first (0 = all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  rk->add_option("--model", rp->model, "NAME or NAME@VERSION (default: the server's default model)");
  rk->callback([&command, rp, q_image, q_text] {
    rp->has_image = q_image->count() > 0;
    rp->has_text = q_text->count() > 0;
    command.run = [&command, rp] { return rank(ServerConnection(command.options), *rp); };
  });
}

}  // namespace refinery::client
