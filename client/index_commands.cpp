// `refinery index create|add|list|show|drop|delete` and `refinery search`:
// the IndexService. `index add` reads its items from flags or a JSONL file,
// checks them all (ids, files, JSON) before the first call, then sends them
// in chunks so a large collection never hits the server's per-call limits.
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
  bool upsert = false;
  int items_per_call = 64;
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

std::vector<PendingItem> collect_items(const AddParams& p) {
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
  if (items.empty()) throw UsageError("index add: give items with --text ID=TEXT, --image ID=PATH or --items FILE.jsonl");
  // A repeated id would fail (or silently replace with --upsert) half-way
  // through the upload; catch it before the first call.
  std::map<std::string, const PendingItem*> seen;
  for (const auto& item : items) {
    auto [it, fresh] = seen.emplace(item.id, &item);
    if (!fresh) throw invalid_argument("duplicate id '" + item.id + "' (" + it->second->origin + " and " + item.origin + ")");
  }
  return items;
}

v1::IndexItem to_proto(const PendingItem& item) {
  v1::IndexItem out;
  out.set_id(item.id);
  out.set_metadata_json(item.metadata_json);
  switch (item.kind) {
    case PendingItem::Kind::kText: out.set_text(item.text); break;
    case PendingItem::Kind::kImage: *out.mutable_image() = read_image(item.image_path); break;
    case PendingItem::Kind::kVector: out.mutable_vector()->mutable_values()->Add(item.vector.begin(), item.vector.end()); break;
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
  const std::vector<PendingItem> items = collect_items(p);
  std::vector<size_t> bytes;
  for (const auto& item : items) {
    size_t n = item.id.size() + item.metadata_json.size() + 16;
    if (item.kind == PendingItem::Kind::kText) n += item.text.size();
    if (item.kind == PendingItem::Kind::kImage) n += image_file_size(item.image_path);
    if (item.kind == PendingItem::Kind::kVector) n += 4 * item.vector.size();
    bytes.push_back(n);
  }
  const auto start = std::chrono::steady_clock::now();
  auto stub = v1::IndexService::NewStub(c.channel());
  int64_t added = 0, size = 0;
  v1::Timing timing;
  const auto chunks = plan_chunks(bytes, p.items_per_call);
  ProgressBar bar(static_cast<int64_t>(items.size()), call_progress("adding to " + p.index, "items", chunks.size()));
  for (const auto& chunk : chunks) {
    v1::AddItemsRequest request;
    request.set_index(p.index);
    request.set_upsert(p.upsert);
    for (size_t i = chunk.begin; i < chunk.end; ++i) *request.add_items() = to_proto(items[i]);
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
  add->add_flag("--upsert", ap->upsert, "Replace items whose id exists (otherwise an existing id is an error)");
  add->add_option("--items-per-call", ap->items_per_call, "Items sent per call")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
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
