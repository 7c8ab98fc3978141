// `refinery index create|add|list|show|drop|delete` and `refinery search`:
// the IndexService. `index add` reads its items from flags, a JSONL file, or
// in bulk (--from) a safetensors file of embeddings or a folder of images;
// it checks them all (ids, files, JSON) before the first call, then sends
// them in chunks so a large collection never hits the server's per-call
// limits.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>

#include "client/client_errors.h"
#include "client/commands.h"
#include "client/input_files.h"
#include "client/output.h"
#include "refinery/proto_json.h"
#include "client/request_chunks.h"
#include "client/server_connection.h"
#include "core/base/error.h"
#include "core/safetensors/safetensors.h"
#include "refinery/v1/index.grpc.pb.h"

namespace refinery::client {
namespace {

using nlohmann::ordered_json;  // keeps the key order of metadata as written

struct CreateParams {
  std::string name, model;
  std::string kind = "flat";  // flat | ivf | hnsw
  int nlist = 0, hnsw_m = 0, ef_construction = 0;  // 0 = the server's default
};

struct AddParams {
  std::string index;
  std::vector<std::string> texts, images;  // ID=TEXT, ID=PATH
  std::string items_file;                  // JSONL
  std::string from;                        // FILE.safetensors or a folder of images
  std::string id_prefix;                   // --from FILE: ids PREFIX0, PREFIX1, ...
  bool upsert = false;
  int items_per_call = 0;  // 0: 64, or 1024 for precomputed vectors
};

struct DeleteParams {
  std::string index;
  std::vector<std::string> ids;
};

struct SearchParams {
  std::string index, text, image;
  bool has_text = false, has_image = false;
  int k = 10, nprobe = 0, ef = 0;
};

// An item as the user gave it; images are read only when their chunk is
// sent, so adding a large folder does not hold every file in memory.
struct PendingItem {
  std::string id;
  std::string text;
  std::string image_path;
  std::vector<float> vector;
  const float* mapped = nullptr;  // kVector from --from FILE: the row in the (kept) file or its float copy
  enum class Kind { kText, kImage, kVector } kind = Kind::kText;
  std::string metadata_json;
  std::string origin;  // where it came from, for errors: "--text #2", "items.jsonl:14"
};

std::string kind_name(v1::IndexKind kind) {
  switch (kind) {
    case v1::INDEX_KIND_IVF: return "ivf";
    case v1::INDEX_KIND_HNSW: return "hnsw";
    default: return "flat";
  }
}

v1::IndexKind parse_kind(const std::string& kind) {
  if (kind == "ivf") return v1::INDEX_KIND_IVF;
  if (kind == "hnsw") return v1::INDEX_KIND_HNSW;
  return v1::INDEX_KIND_FLAT;
}

std::string describe_options(const v1::IndexInfo& info) {
  const auto& o = info.options();
  std::string s = kind_name(o.kind());
  if (o.kind() == v1::INDEX_KIND_IVF) {
    s += " (nlist " + (o.ivf_nlist() > 0 ? std::to_string(o.ivf_nlist()) : std::string("auto")) +
         (info.trained() ? ", trained" : ", not trained yet") + ")";
  }
  if (o.kind() == v1::INDEX_KIND_HNSW) {
    s += " (M " + std::to_string(o.hnsw_m()) + ", ef_construction " + std::to_string(o.hnsw_ef_construction()) + ")";
  }
  return s;
}

std::string id_of(const ordered_json& value, const std::string& where) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_integer()) return std::to_string(value.get<int64_t>());
  throw invalid_argument(where + ": \"id\" must be a string or an integer");
}

// One JSON object per line: {"id", one of "text" | "image" | "vector",
// optional "metadata" object}. Relative image paths are relative to the
// file, so a folder of images and its list can move together.
std::vector<PendingItem> read_items_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw not_found("cannot open items file '" + path + "'");
  const std::filesystem::path base = std::filesystem::path(path).parent_path();
  std::vector<PendingItem> items;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string where = path + ":" + std::to_string(number);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ordered_json j;
    try {
      j = ordered_json::parse(line);
    } catch (const ordered_json::exception& e) {
      throw invalid_argument(where + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw invalid_argument(where + ": must be a JSON object {\"id\": ..., \"text\": ...}");
    PendingItem item;
    item.origin = where;
    int contents = 0;
    for (const auto& [key, value] : j.items()) {
      if (key == "id") {
        item.id = id_of(value, where);
      } else if (key == "text") {
        if (!value.is_string()) throw invalid_argument(where + ": \"text\" must be a string");
        item.kind = PendingItem::Kind::kText;
        item.text = value.get<std::string>();
        ++contents;
      } else if (key == "image") {
        if (!value.is_string()) throw invalid_argument(where + ": \"image\" must be a path string");
        std::filesystem::path p = value.get<std::string>();
        item.kind = PendingItem::Kind::kImage;
        item.image_path = (p.is_relative() && !base.empty() ? base / p : p).string();
        ++contents;
      } else if (key == "vector") {
        if (!value.is_array()) throw invalid_argument(where + ": \"vector\" must be an array of numbers");
        for (const auto& v : value) {
          if (!v.is_number()) throw invalid_argument(where + ": \"vector\" must be an array of numbers");
          item.vector.push_back(v.get<float>());
        }
        item.kind = PendingItem::Kind::kVector;
        ++contents;
      } else if (key == "metadata") {
        if (!value.is_object()) throw invalid_argument(where + ": \"metadata\" must be a JSON object");
        item.metadata_json = value.dump();
      } else {
        throw invalid_argument(where + ": unknown key '" + key + "' (expected id, text, image, vector, metadata)");
      }
    }
    if (item.id.empty()) throw invalid_argument(where + ": missing \"id\"");
    if (contents != 1) throw invalid_argument(where + ": needs exactly one of \"text\", \"image\", \"vector\"");
    items.push_back(std::move(item));
  }
  if (in.bad()) throw invalid_argument("cannot read items file '" + path + "'");
  return items;
}

constexpr const char* kImageExtensions[] = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"};

bool is_image_file(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* known : kImageExtensions) {
    if (ext == known) return true;
  }
  return false;
}

// Every image in `dir` and below, sorted; the id is the path relative to
// `dir` ("cats/1.jpg"), so adding the folder again with --upsert updates it.
std::vector<PendingItem> images_in_folder(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec), end;
       !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file() && is_image_file(it->path())) files.push_back(it->path());
  }
  if (ec) throw invalid_argument("cannot list folder '" + dir + "': " + ec.message());
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    throw invalid_argument("folder '" + dir + "' holds no images (looked for .jpg .jpeg .png .bmp .webp .gif .tif .tiff)");
  }
  std::vector<PendingItem> items;
  for (const auto& f : files) {
    PendingItem item;
    item.kind = PendingItem::Kind::kImage;
    item.id = fs::relative(f, dir).generic_string();
    item.image_path = f.string();
    item.origin = f.string();
    items.push_back(std::move(item));
  }
  return items;
}

// Rows of `embeddings` [N, D] from a safetensors file (what `refinery embed
// --output` and `refinery-model embed --output` write). Ids: PREFIX<row> with
// --id-prefix, else the file's "ids" metadata (a JSON array of N strings),
// else its "items" metadata (refinery-model embed: the texts or image paths).
struct EmbeddingsFile {
  explicit EmbeddingsFile(SafetensorsFile f) : file(std::move(f)) {}
  SafetensorsFile file;
  std::vector<float> converted;  // F16/BF16/F64 files, as float32
  const float* rows = nullptr;
  int64_t n = 0, dim = 0;
};

std::vector<PendingItem> rows_of_file(const std::string& path, const std::string& id_prefix,
                                      std::shared_ptr<EmbeddingsFile>* keep) {
  auto f = std::make_shared<EmbeddingsFile>(SafetensorsFile::open(path, /*for_loading=*/true));
  const auto& names = f->file.names();
  const std::string tensor = f->file.contains("embeddings") ? "embeddings" : (names.size() == 1 ? names[0] : "");
  if (tensor.empty()) {
    throw invalid_argument(path + ": no \"embeddings\" tensor (and more than one tensor to choose from)");
  }
  const TensorView& t = f->file.at(tensor);
  if (t.shape.size() != 2 || t.shape[0] < 1 || t.shape[1] < 1) {
    throw invalid_argument(path + ": tensor \"" + tensor + "\" must be [rows, dim], not " +
                           std::to_string(t.shape.size()) + "-dimensional");
  }
  f->n = t.shape[0];
  f->dim = t.shape[1];
  if (t.dtype == DType::kF32) {
    f->rows = reinterpret_cast<const float*>(t.data);
  } else if (t.dtype == DType::kF16 || t.dtype == DType::kBF16 || t.dtype == DType::kF64) {
    f->converted = t.to_floats();
    f->rows = f->converted.data();
  } else {
    throw invalid_argument(path + ": tensor \"" + tensor + "\" holds " + dtype_name(t.dtype) +
                           "; embeddings must be floating point");
  }

  std::vector<std::string> ids;
  if (!id_prefix.empty()) {
    for (int64_t i = 0; i < f->n; ++i) ids.push_back(id_prefix + std::to_string(i));
  } else {
    const auto& meta = f->file.metadata();
    const char* key = meta.count("ids") ? "ids" : (meta.count("items") ? "items" : nullptr);
    if (!key) {
      throw invalid_argument(path + ": no \"ids\" or \"items\" metadata names its rows; give --id-prefix PREFIX "
                             "to number them PREFIX0, PREFIX1, ...");
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(meta.at(key));
    } catch (const nlohmann::json::exception& e) {
      throw invalid_argument(path + ": metadata \"" + key + "\" is not valid JSON: " + e.what());
    }
    if (!j.is_array() || static_cast<int64_t>(j.size()) != f->n) {
      throw invalid_argument(path + ": metadata \"" + key + "\" must be a JSON array of " + std::to_string(f->n) +
                             " strings, one per row");
    }
    for (size_t i = 0; i < j.size(); ++i) {
      if (!j[i].is_string() || j[i].get<std::string>().empty()) {
        throw invalid_argument(path + ": metadata \"" + key + "\" item " + std::to_string(i) +
                               " is not a non-empty string");
      }
      ids.push_back(j[i].get<std::string>());
    }
  }
  std::vector<PendingItem> items(static_cast<size_t>(f->n));
  for (int64_t i = 0; i < f->n; ++i) {
    PendingItem& item = items[i];
    item.kind = PendingItem::Kind::kVector;
    item.id = std::move(ids[i]);
    item.mapped = f->rows + i * f->dim;
    item.origin = path + " row " + std::to_string(i);
  }
  *keep = f;
  return items;
}

std::vector<PendingItem> collect_items(const AddParams& p, std::shared_ptr<EmbeddingsFile>* keep) {
  std::vector<PendingItem> items;
  for (size_t i = 0; i < p.texts.size(); ++i) {
    auto [id, text] = split_id_value(p.texts[i], "--text", "TEXT");
    PendingItem item;
    item.id = id;
    item.text = text;
    item.origin = "--text #" + std::to_string(i + 1) + " (" + id + ")";
    items.push_back(std::move(item));
  }
  for (size_t i = 0; i < p.images.size(); ++i) {
    auto [id, path] = split_id_value(p.images[i], "--image", "PATH");
    PendingItem item;
    item.id = id;
    item.kind = PendingItem::Kind::kImage;
    item.image_path = path;
    item.origin = "--image #" + std::to_string(i + 1) + " (" + id + ")";
    items.push_back(std::move(item));
  }
  if (!p.items_file.empty()) {
    auto from_file = read_items_file(p.items_file);
    if (from_file.empty()) throw invalid_argument("items file '" + p.items_file + "' holds no items");
    for (auto& item : from_file) items.push_back(std::move(item));
  }
  if (!p.id_prefix.empty() && (p.from.empty() || std::filesystem::is_directory(p.from))) {
    throw UsageError("index add: --id-prefix numbers the rows of a --from FILE.safetensors");
  }
  if (!p.from.empty()) {
    std::error_code ec;
    if (!std::filesystem::exists(p.from, ec)) throw not_found("--from: no such file or folder '" + p.from + "'");
    auto bulk = std::filesystem::is_directory(p.from, ec) ? images_in_folder(p.from) : rows_of_file(p.from, p.id_prefix, keep);
    for (auto& item : bulk) items.push_back(std::move(item));
  }
  if (items.empty()) {
    throw UsageError("index add: give items with --text ID=TEXT, --image ID=PATH, --items FILE.jsonl or "
                     "--from FILE.safetensors|FOLDER");
  }
  // A repeated id would fail (or silently replace with --upsert) half-way
  // through the upload; catch it before the first call.
  std::map<std::string, const PendingItem*> seen;
  for (const auto& item : items) {
    auto [it, fresh] = seen.emplace(item.id, &item);
    if (!fresh) throw invalid_argument("duplicate id '" + item.id + "' (" + it->second->origin + " and " + item.origin + ")");
  }
  return items;
}

v1::IndexItem to_proto(const PendingItem& item, int64_t dim) {
  v1::IndexItem out;
  out.set_id(item.id);
  out.set_metadata_json(item.metadata_json);
  switch (item.kind) {
    case PendingItem::Kind::kText: out.set_text(item.text); break;
    case PendingItem::Kind::kImage: *out.mutable_image() = read_image(item.image_path); break;
    case PendingItem::Kind::kVector:
      if (item.mapped) {
        out.mutable_vector()->mutable_values()->Add(item.mapped, item.mapped + dim);
      } else {
        out.mutable_vector()->mutable_values()->Add(item.vector.begin(), item.vector.end());
      }
      break;
  }
  return out;
}

int create_index(const ServerConnection& c, const CreateParams& p) {
  auto stub = v1::IndexService::NewStub(c.channel());
  v1::CreateIndexRequest request;
  request.set_name(p.name);
  request.set_model(p.model);
  auto* o = request.mutable_options();
  o->set_kind(parse_kind(p.kind));
  o->set_ivf_nlist(p.nlist);
  o->set_hnsw_m(p.hnsw_m);
  o->set_hnsw_ef_construction(p.ef_construction);
  v1::IndexInfo info;
  check_status(stub->CreateIndex(c.context().get(), request, &info));
  if (c.options().json) {
    print_json(proto_to_json(info));
  } else {
    std::cout << "created index " << info.name() << ": " << describe_options(info) << ", model " << info.model()
              << ", dim " << info.dim() << '\n';
  }
  return 0;
}

int add_items(const ServerConnection& c, const AddParams& p) {
  std::shared_ptr<EmbeddingsFile> file;  // --from FILE: the rows stay in its mapping
  const std::vector<PendingItem> items = collect_items(p, &file);
  const int64_t file_dim = file ? file->dim : 0;
  std::vector<size_t> bytes;
  bool all_vectors = true;
  for (const auto& item : items) {
    size_t n = item.id.size() + item.metadata_json.size() + 16;
    if (item.kind == PendingItem::Kind::kText) n += item.text.size();
    if (item.kind == PendingItem::Kind::kImage) n += image_file_size(item.image_path);
    if (item.kind == PendingItem::Kind::kVector) n += 4 * (item.mapped ? file_dim : item.vector.size());
    all_vectors = all_vectors && item.kind == PendingItem::Kind::kVector;
    bytes.push_back(n);
  }
  if (file && file->file.metadata().count("model")) {
    // Embeddings of another model (or version) would be silently wrong neighbours.
    auto stub = v1::IndexService::NewStub(c.channel());
    v1::GetIndexRequest request;
    request.set_name(p.index);
    v1::IndexInfo info;
    check_status(stub->GetIndex(c.context().get(), request, &info));
    const std::string& model = file->file.metadata().at("model");
    if (model != info.model()) {
      throw Error(ErrorCode::kFailedPrecondition, p.from + " holds embeddings of model " + model + "; index " + p.index +
                                                      " is bound to " + info.model());
    }
  }
  // Precomputed vectors cost the server no model time: send them in the
  // largest calls it takes (--max-request-items, 1024 by default).
  const int items_per_call = p.items_per_call > 0 ? p.items_per_call : (all_vectors ? 1024 : 64);
  const auto start = std::chrono::steady_clock::now();
  auto stub = v1::IndexService::NewStub(c.channel());
  int64_t added = 0, size = 0;
  v1::Timing timing;
  const auto chunks = plan_chunks(bytes, items_per_call);
  ProgressBar bar(static_cast<int64_t>(items.size()), call_progress("adding to " + p.index, "items", chunks.size()));
  for (const auto& chunk : chunks) {
    v1::AddItemsRequest request;
    request.set_index(p.index);
    request.set_upsert(p.upsert);
    for (size_t i = chunk.begin; i < chunk.end; ++i) *request.add_items() = to_proto(items[i], file_dim);
    v1::AddItemsResponse response;
    std::string context = chunk_context(chunk, items.size());
    if (!context.empty()) context += "; " + std::to_string(added) + " added before this call";
    check_status(stub->AddItems(c.context().get(), request, &response), context);
    added += response.added();
    size = response.size();
    timing.set_preprocess_ms(timing.preprocess_ms() + response.timing().preprocess_ms());
    timing.set_queue_ms(timing.queue_ms() + response.timing().queue_ms());
    timing.set_inference_ms(timing.inference_ms() + response.timing().inference_ms());
    timing.set_total_ms(timing.total_ms() + response.timing().total_ms());
    timing.set_batch_size(std::max(timing.batch_size(), response.timing().batch_size()));
    bar.update(static_cast<int64_t>(chunk.end));
  }
  bar.finish();
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (c.options().json) {
    print_json({{"index", p.index}, {"added", added}, {"size", size}, {"calls", chunks.size()},
                {"timing", proto_to_json(timing)}});
  } else {
    std::cout << "added " << added << " item(s) to " << p.index << " (size " << size << ") in " << chunks.size()
              << " call(s), " << format_fixed(wall_ms, 1) << " ms; server " << describe_timing(timing) << '\n';
  }
  return 0;
}

int list_indexes(const ServerConnection& c) {
  auto stub = v1::IndexService::NewStub(c.channel());
  v1::ListIndexesResponse response;
  check_status(stub->ListIndexes(c.context().get(), v1::ListIndexesRequest(), &response));
  if (c.options().json) {
    print_json(proto_to_json(response));
    return 0;
  }
  if (response.indexes().empty()) {
    std::cout << "no indexes (create one with `refinery index create NAME`)\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& i : response.indexes()) {
    rows.push_back({i.name(), std::to_string(i.size()), kind_name(i.options().kind()), std::to_string(i.dim()), i.model()});
  }
  print_table({"NAME", "SIZE", "KIND", "DIM", "MODEL"}, rows);
  return 0;
}

int show_index(const ServerConnection& c, const std::string& name) {
  auto stub = v1::IndexService::NewStub(c.channel());
  v1::GetIndexRequest request;
  request.set_name(name);
  v1::IndexInfo info;
  check_status(stub->GetIndex(c.context().get(), request, &info));
  if (c.options().json) {
    print_json(proto_to_json(info));
  } else {
    std::cout << info.name() << '\n'
              << "  model:  " << info.model() << '\n'
              << "  kind:   " << describe_options(info) << '\n'
              << "  dim:    " << info.dim() << '\n'
              << "  size:   " << info.size() << " item(s)\n";
  }
  return 0;
}

int drop_index(const ServerConnection& c, const std::string& name) {
  auto stub = v1::IndexService::NewStub(c.channel());
  v1::DropIndexRequest request;
  request.set_name(name);
  v1::DropIndexResponse response;
  check_status(stub->DropIndex(c.context().get(), request, &response));
  if (c.options().json) {
    print_json({{"dropped", name}});
  } else {
    std::cout << "dropped index " << name << '\n';
  }
  return 0;
}

int delete_items(const ServerConnection& c, const DeleteParams& p) {
  auto stub = v1::IndexService::NewStub(c.channel());
  v1::DeleteItemsRequest request;
  request.set_index(p.index);
  for (const auto& id : p.ids) request.add_ids(id);
  v1::DeleteItemsResponse response;
  check_status(stub->DeleteItems(c.context().get(), request, &response));
  if (c.options().json) {
    print_json(proto_to_json(response));
  } else {
    std::cout << "deleted " << response.deleted() << " of " << p.ids.size() << " id(s) from " << p.index << " (size "
              << response.size() << ")\n";
  }
  return 0;
}

int search(const ServerConnection& c, const SearchParams& p) {
  if (p.has_text == p.has_image) throw UsageError("search: give one query, --text QUERY or --image IMG");
  v1::SearchRequest request;
  request.set_index(p.index);
  request.set_k(p.k);
  request.mutable_params()->set_ivf_nprobe(p.nprobe);
  request.mutable_params()->set_hnsw_ef_search(p.ef);
  if (p.has_text) {
    request.set_text(p.text);
  } else {
    *request.mutable_image() = read_image(p.image);
  }
  auto stub = v1::IndexService::NewStub(c.channel());
  v1::SearchResponse response;
  check_status(stub->Search(c.context().get(), request, &response));
  if (c.options().json) {
    print_json(proto_to_json(response));
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (int i = 0; i < response.hits_size(); ++i) {
    const auto& h = response.hits(i);
    rows.push_back({std::to_string(i + 1), format_fixed(h.score(), 4), h.id(), h.metadata_json()});
  }
  if (rows.empty()) {
    std::cout << "no hits (is the index empty?)\n";
  } else {
    print_table({"#", "SCORE", "ID", "METADATA"}, rows);
  }
  std::cout << "search " << format_fixed(response.search_ms(), 2) << " ms; server " << describe_timing(response.timing())
            << '\n';
  return 0;
}

}  // namespace

void add_index_commands(CLI::App& app, Command& command) {
  auto* index = app.add_subcommand("index", "Vector indexes: named collections of embeddings bound to one model");
  index->require_subcommand(1);

  auto* create = index->add_subcommand("create", "Create an empty index");
  auto cp = std::make_shared<CreateParams>();
  create->add_option("name", cp->name, "Index name")->required();
  create->add_option("--model", cp->model, "NAME or NAME@VERSION (default: the server's default, pinned now)");
  create->add_option("--kind", cp->kind, "flat (exact), ivf or hnsw")
      ->check(CLI::IsMember({"flat", "ivf", "hnsw"}))
      ->capture_default_str();
  create->add_option("--nlist", cp->nlist, "IVF cells (0 = about 4 * sqrt(n) when trained)")->check(CLI::NonNegativeNumber);
  create->add_option("--hnsw-m", cp->hnsw_m, "HNSW neighbours per node (0 = 32)")->check(CLI::NonNegativeNumber);
  create->add_option("--ef-construction", cp->ef_construction, "HNSW build breadth (0 = 64)")
      ->check(CLI::NonNegativeNumber);
  create->callback([&command, cp] {
    command.run = [&command, cp] { return create_index(ServerConnection(command.options), *cp); };
  });

  auto* add = index->add_subcommand("add", "Add items: texts, images or precomputed vectors");
  auto ap = std::make_shared<AddParams>();
  add->add_option("name", ap->index, "Index name")->required();
  add->add_option("--text", ap->texts, "ID=TEXT (repeatable)")->allow_extra_args(false);
  add->add_option("--image", ap->images, "ID=PATH (repeatable)")->allow_extra_args(false);
  add->add_option("--items", ap->items_file,
                  "JSONL: {\"id\": ..., \"text\"|\"image\"|\"vector\": ..., \"metadata\": {...}} per line; "
                  "image paths relative to the file");
  add->add_option("--from", ap->from,
                  "Bulk: FILE.safetensors of embeddings [N, D] (ids from its \"ids\" or \"items\" metadata, or "
                  "--id-prefix), or a FOLDER of images (ids = paths relative to it)");
  add->add_option("--id-prefix", ap->id_prefix, "--from FILE: number the rows PREFIX0, PREFIX1, ...");
  add->add_flag("--upsert", ap->upsert, "Replace items whose id exists (otherwise an existing id is an error)");
  add->add_option("--items-per-call", ap->items_per_call, "Items sent per call (default 64; 1024 for vectors)")
      ->check(CLI::PositiveNumber);
  add->callback([&command, ap] {
    command.run = [&command, ap] { return add_items(ServerConnection(command.options), *ap); };
  });

  index->add_subcommand("list", "Indexes and their sizes")->callback([&command] {
    command.run = [&command] { return list_indexes(ServerConnection(command.options)); };
  });

  auto* show = index->add_subcommand("show", "One index's model, kind, dimension and size");
  auto show_name = std::make_shared<std::string>();
  show->add_option("name", *show_name, "Index name")->required();
  show->callback([&command, show_name] {
    command.run = [&command, show_name] { return show_index(ServerConnection(command.options), *show_name); };
  });

  auto* drop = index->add_subcommand("drop", "Delete an index and its items");
  auto drop_name = std::make_shared<std::string>();
  drop->add_option("name", *drop_name, "Index name")->required();
  drop->callback([&command, drop_name] {
    command.run = [&command, drop_name] { return drop_index(ServerConnection(command.options), *drop_name); };
  });

  auto* del = index->add_subcommand("delete", "Delete items by id");
  auto dp = std::make_shared<DeleteParams>();
  del->add_option("name", dp->index, "Index name")->required();
  del->add_option("ids", dp->ids, "Item ids")->required();
  del->callback([&command, dp] {
    command.run = [&command, dp] { return delete_items(ServerConnection(command.options), *dp); };
  });

  auto* s = app.add_subcommand("search", "Nearest items of an index to a text or an image");
  auto sp = std::make_shared<SearchParams>();
  s->add_option("index", sp->index, "Index name")->required();
  auto* q_text = s->add_option("--text", sp->text, "Query text");
  auto* q_image = s->add_option("--image", sp->image, "Query image file");
  q_text->excludes(q_image);
  s->add_option("-k", sp->k, "Hits to return")->check(CLI::PositiveNumber)->capture_default_str();
  s->add_option("--nprobe", sp->nprobe, "IVF cells visited (0 = the index's default)")->check(CLI::NonNegativeNumber);
  s->add_option("--ef", sp->ef, "HNSW search breadth (0 = the index's default)")->check(CLI::NonNegativeNumber);
  s->callback([&command, sp, q_text, q_image] {
    sp->has_text = q_text->count() > 0;
    sp->has_image = q_image->count() > 0;
    command.run = [&command, sp] { return search(ServerConnection(command.options), *sp); };
  });
}

}  // namespace refinery::client
