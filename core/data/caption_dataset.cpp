#include "core/data/caption_dataset.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>
#include <unordered_map>

#include "core/base/error.h"
#include "core/data/csv_reader.h"

namespace refinery {
namespace {

namespace fs = std::filesystem;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Relative paths are taken relative to `base`; the result is absolute.
std::string resolve_path(const fs::path& base, const std::string& raw) {
  fs::path p(raw);
  if (p.is_relative()) p = base / p;
  return fs::absolute(p).lexically_normal().string();
}

fs::path folder_of(const std::string& file) { return fs::absolute(fs::path(file)).parent_path(); }

// Counts offending entries and keeps the first few for the message.
class Offenders {
 public:
  explicit Offenders(size_t keep) : keep_(keep) {}
  void add(const std::string& where) {
    if (listed_.size() < keep_) listed_.push_back(where);
    ++count_;
  }
  size_t count() const { return count_; }
  // "3 empty captions: line 4, line 9, ..." style list.
  std::string list() const {
    std::string s;
    for (size_t i = 0; i < listed_.size(); ++i) s += (i ? ", " : "") + listed_[i];
    if (count_ > listed_.size()) s += (listed_.empty() ? "" : ", ") + std::string("...");
    return s;
  }

 private:
  size_t keep_;
  size_t count_ = 0;
  std::vector<std::string> listed_;
};

// Items keyed by their resolved image path, in order of first appearance.
class ItemCollector {
 public:
  void add(const std::string& path, const std::string& caption) {
    auto [it, inserted] = index_.emplace(path, items_.size());
    if (inserted) items_.push_back(CaptionedImage{path, {}});
    items_[it->second].captions.push_back(caption);
  }
  std::vector<CaptionedImage> take() { return std::move(items_); }
  bool empty() const { return items_.empty(); }

 private:
  std::unordered_map<std::string, size_t> index_;
  std::vector<CaptionedImage> items_;
};

void throw_if_empty_captions(const Offenders& empty, const std::string& what) {
  if (empty.count() == 0) return;
  throw invalid_argument(what + ": " + std::to_string(empty.count()) + " empty caption" +
                         (empty.count() == 1 ? "" : "s") + " (" + empty.list() + ")");
}

// ------------------------------------------------------------------ COCO

std::string json_type(const nlohmann::json& j) { return j.type_name(); }

std::vector<CaptionedImage> load_coco(const std::string& annotations, const std::string& image_dir,
                                      const CaptionDatasetOptions& options) {
  const std::string what = "coco annotations " + single_quoted(annotations);
  if (image_dir.empty()) throw invalid_argument(what + ": the spec names no image folder (coco:ANNOTATIONS.json:IMAGE_DIR)");
  if (options.check_images_exist) {
    std::error_code ec;
    if (!fs::is_directory(image_dir, ec)) throw invalid_argument("coco image folder " + single_quoted(image_dir) + ": not a directory");
  }
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(read_text_file(annotations, what));
  } catch (const nlohmann::json::exception& e) {
    throw invalid_argument(what + ": invalid JSON: " + without_quoted_input(e.what()));
  }
  if (!root.is_object()) throw invalid_argument(what + ": expected a JSON object at the top, got " + json_type(root));
  for (const char* key : {"images", "annotations"}) {
    if (!root.contains(key)) throw invalid_argument(what + ": missing the \"" + key + "\" array");
    if (!root[key].is_array()) throw invalid_argument(what + ": \"" + key + "\" is " + json_type(root[key]) + ", not an array");
  }

  // id (as JSON text, so 7 and "7" stay distinct) -> position in "images".
  std::unordered_map<std::string, size_t> id_index;
  std::vector<std::string> paths;
  const nlohmann::json& images = root["images"];
  for (size_t i = 0; i < images.size(); ++i) {
    const nlohmann::json& im = images[i];
    const std::string where = what + " images[" + std::to_string(i) + "]";
    if (!im.is_object()) throw invalid_argument(where + ": expected an object, got " + json_type(im));
    if (!im.contains("id")) throw invalid_argument(where + ": missing \"id\"");
    if (!im["id"].is_number_integer() && !im["id"].is_string())
      throw invalid_argument(where + ": \"id\" must be an integer or a string, got " + json_type(im["id"]));
    if (!im.contains("file_name")) throw invalid_argument(where + ": missing \"file_name\"");
    if (!im["file_name"].is_string()) throw invalid_argument(where + ": \"file_name\" must be a string, got " + json_type(im["file_name"]));
    const std::string file_name = im["file_name"].get<std::string>();
    if (file_name.empty()) throw invalid_argument(where + ": empty \"file_name\"");
    const std::string id = im["id"].dump();
    auto [it, inserted] = id_index.emplace(id, i);
    if (!inserted) throw invalid_argument(where + ": duplicate id " + id + " (also images[" + std::to_string(it->second) + "])");
    paths.push_back(resolve_path(fs::absolute(fs::path(image_dir)), file_name));
  }

  std::vector<std::vector<std::string>> captions(images.size());
  Offenders empty(options.max_offenders_listed), unknown(options.max_offenders_listed);
  const nlohmann::json& anns = root["annotations"];
  for (size_t i = 0; i < anns.size(); ++i) {
    const nlohmann::json& a = anns[i];
    const std::string where = what + " annotations[" + std::to_string(i) + "]";
    if (!a.is_object()) throw invalid_argument(where + ": expected an object, got " + json_type(a));
    if (!a.contains("image_id")) throw invalid_argument(where + ": missing \"image_id\"");
    if (!a.contains("caption")) throw invalid_argument(where + ": missing \"caption\"");
    if (!a["caption"].is_string()) throw invalid_argument(where + ": \"caption\" must be a string, got " + json_type(a["caption"]));
    const std::string id = a["image_id"].dump();
    const auto it = id_index.find(id);
    if (it == id_index.end()) {
      unknown.add("annotations[" + std::to_string(i) + "] image_id " + id);
      continue;
    }
    std::string caption = trim_whitespace(a["caption"].get<std::string>());
    if (caption.empty()) {
      empty.add("annotations[" + std::to_string(i) + "] image_id " + id);
      continue;
    }
    captions[it->second].push_back(std::move(caption));
  }
  if (unknown.count() > 0)
    throw invalid_argument(what + ": " + std::to_string(unknown.count()) + " annotation" + (unknown.count() == 1 ? " names an" : "s name") +
                           " unknown image id (" + unknown.list() + ")");
  throw_if_empty_captions(empty, what);

  ItemCollector items;
  for (size_t i = 0; i < images.size(); ++i)
    for (const std::string& c : captions[i]) items.add(paths[i], c);
  return items.take();
}

// ------------------------------------------------------------------ CSV

std::vector<CaptionedImage> load_csv(const std::string& file, const CaptionDatasetOptions& options) {
  const std::string what = "csv file " + single_quoted(file);
  const std::vector<CsvRecord> records = parse_csv(read_text_file(file, what), what);
  if (records.empty()) throw invalid_argument(what + ": empty file (expected a header row with columns filepath,caption)");
  const CsvRecord& header = records[0];
  int path_col = -1, caption_col = -1;
  for (size_t c = 0; c < header.fields.size(); ++c) {
    const std::string name = lower(trim_whitespace(header.fields[c]));
    if (name == "filepath" && path_col < 0) path_col = static_cast<int>(c);
    if (name == "caption" && caption_col < 0) caption_col = static_cast<int>(c);
  }
  std::string missing;
  if (path_col < 0) missing += "'filepath'";
  if (caption_col < 0) missing += std::string(missing.empty() ? "" : " and ") + "'caption'";
  if (!missing.empty())
    throw invalid_argument(what + " line " + std::to_string(header.line) + ": the header row has no " + missing +
                           " column (a header row such as filepath,caption is expected; this one has " +
                           std::to_string(header.fields.size()) + " field" + (header.fields.size() == 1 ? "" : "s") +
                           ", not quoted: the file's text is not echoed)");

  const size_t needed = static_cast<size_t>(std::max(path_col, caption_col)) + 1;
  const fs::path base = folder_of(file);
  ItemCollector items;
  Offenders empty(options.max_offenders_listed);
  for (size_t r = 1; r < records.size(); ++r) {
    const CsvRecord& rec = records[r];
    const std::string where = what + " line " + std::to_string(rec.line);
    if (rec.fields.size() < needed)
      throw invalid_argument(where + ": " + std::to_string(rec.fields.size()) + " field" + (rec.fields.size() == 1 ? "" : "s") +
                             ", but the header puts " + (path_col + 1 == static_cast<int>(needed) ? "'filepath'" : "'caption'") +
                             " in column " + std::to_string(needed));
    const std::string path = trim_whitespace(rec.fields[path_col]);
    if (path.empty()) throw invalid_argument(where + ": empty 'filepath'");
    std::string caption = trim_whitespace(rec.fields[caption_col]);
    if (caption.empty()) {
      empty.add("line " + std::to_string(rec.line));
      continue;
    }
    items.add(resolve_path(base, path), caption);
  }
  throw_if_empty_captions(empty, what);
  return items.take();
}

// ------------------------------------------------------------------ JSONL

std::vector<CaptionedImage> load_jsonl(const std::string& file, const CaptionDatasetOptions& options) {
  const std::string what = "jsonl file " + single_quoted(file);
  const std::string text = read_text_file(file, what);
  const fs::path base = folder_of(file);
  ItemCollector items;
  Offenders empty(options.max_offenders_listed);
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (trim_whitespace(line).empty()) continue;
    const std::string where = what + " line " + std::to_string(line_no);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      // The parser counts lines within this one line; say only the column.
      std::string why = without_quoted_input(e.what());
      const std::string first_line = "at line 1, column ";
      const size_t at = why.find(first_line);
      if (at != std::string::npos) why.replace(at, first_line.size(), "at column ");
      throw invalid_argument(where + ": invalid JSON: " + why);
    }
    if (!j.is_object()) throw invalid_argument(where + ": expected a JSON object, got " + json_type(j));
    for (const char* key : {"image", "caption"}) {
      if (!j.contains(key)) throw invalid_argument(where + ": missing \"" + key + "\"");
      if (!j[key].is_string()) throw invalid_argument(where + ": \"" + key + "\" must be a string, got " + json_type(j[key]));
    }
    const std::string path = trim_whitespace(j["image"].get<std::string>());
    if (path.empty()) throw invalid_argument(where + ": empty \"image\"");
    std::string caption = trim_whitespace(j["caption"].get<std::string>());
    if (caption.empty()) {
      empty.add("line " + std::to_string(line_no));
      continue;
    }
    items.add(resolve_path(base, path), caption);
  }
  throw_if_empty_captions(empty, what);
  return items.take();
}

// "coco:A.json:DIR": the annotations path may itself hold ':'; take the
// first split whose left side is an existing file, else the first ':'.
void split_coco(const std::string& rest, std::string* annotations, std::string* image_dir) {
  size_t chosen = std::string::npos;
  for (size_t p = rest.find(':'); p != std::string::npos; p = rest.find(':', p + 1)) {
    if (chosen == std::string::npos) chosen = p;
    std::error_code ec;
    if (fs::is_regular_file(rest.substr(0, p), ec)) {
      chosen = p;
      break;
    }
  }
  if (chosen == std::string::npos) {
    *annotations = rest;
    image_dir->clear();
  } else {
    *annotations = rest.substr(0, chosen);
    *image_dir = rest.substr(chosen + 1);
  }
}

}  // namespace

size_t CaptionDataset::caption_count() const {
  size_t n = 0;
  for (const CaptionedImage& item : items) n += item.captions.size();
  return n;
}

const std::vector<std::string>& caption_dataset_schemes() {
  static const std::vector<std::string> schemes{"coco", "csv", "jsonl"};
  return schemes;
}

CaptionDataset load_caption_dataset(const std::string& spec, const CaptionDatasetOptions& options) {
  const std::string forms = "coco:ANNOTATIONS.json:IMAGE_DIR, csv:FILE or jsonl:FILE";
  const size_t colon = spec.find(':');
  if (colon == std::string::npos)
    throw invalid_argument("data set " + single_quoted(spec) + ": no scheme; expected " + forms);
  const std::string scheme = spec.substr(0, colon);
  const std::string rest = spec.substr(colon + 1);
  if (rest.empty()) throw invalid_argument("data set " + single_quoted(spec) + ": no file after '" + scheme + ":'; expected " + forms);

  CaptionDataset ds;
  ds.spec = spec;
  if (scheme == "coco") {
    std::string annotations, image_dir;
    split_coco(rest, &annotations, &image_dir);
    if (options.roots != nullptr) {
      options.roots->check(annotations, "data set file");
      options.roots->check(image_dir, "image folder");
    }
    ds.items = load_coco(annotations, image_dir, options);
  } else if (scheme == "csv" || scheme == "jsonl") {
    if (options.roots != nullptr) options.roots->check(rest, "data set file");
    ds.items = scheme == "csv" ? load_csv(rest, options) : load_jsonl(rest, options);
  } else {
    throw invalid_argument("data set " + single_quoted(spec) + ": unknown scheme " + single_quoted(scheme) + "; the schemes are coco, csv and jsonl (" +
                           forms + ")");
  }
  if (ds.items.empty()) throw invalid_argument("data set " + single_quoted(spec) + ": no captions at all");
  if (options.roots != nullptr) {
    std::vector<std::string> paths;
    paths.reserve(ds.items.size());
    for (const CaptionedImage& item : ds.items) paths.push_back(item.image_path);
    options.roots->check_existing(paths, "image", "data set " + single_quoted(spec));
  }

  if (options.check_images_exist) {
    Offenders missing(options.max_offenders_listed);
    for (const CaptionedImage& item : ds.items) {
      std::error_code ec;
      if (!fs::is_regular_file(item.image_path, ec)) missing.add(item.image_path);
    }
    if (missing.count() > 0)
      throw invalid_argument("data set " + single_quoted(spec) + ": " + std::to_string(missing.count()) + " of " +
                             std::to_string(ds.items.size()) + " image files do not exist (" + missing.list() + ")");
  }
  return ds;
}

}  // namespace refinery
