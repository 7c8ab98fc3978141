#include "core/data/class_dataset.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <system_error>

#include "core/base/error.h"
#include "core/data/csv_reader.h"
#include "core/image/image_decoder.h"

namespace refinery {
namespace {

namespace fs = std::filesystem;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool has_image_extension(const fs::path& p) {
  static const char* kExtensions[] = {".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp"};
  const std::string ext = lower(p.extension().string());
  return std::any_of(std::begin(kExtensions), std::end(kExtensions), [&](const char* e) { return ext == e; });
}

std::string list_of(const std::vector<std::string>& items, size_t keep) {
  std::string s;
  for (size_t i = 0; i < items.size() && i < keep; ++i) s += (i ? ", " : "") + items[i];
  if (items.size() > keep) s += ", ...";
  return s;
}

ClassDataset load_folder(const std::string& dir, const ClassDatasetOptions& options) {
  const std::string what = "class folder set " + single_quoted(dir);
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw invalid_argument(what + ": the folder does not exist");
  if (!fs::is_directory(dir, ec)) throw invalid_argument(what + ": not a folder");
  ClassDataset ds;
  std::vector<fs::path> class_dirs;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec) && it->path().filename().string()[0] != '.') class_dirs.push_back(it->path());
  }
  if (ec) throw invalid_argument(what + ": cannot list the folder: " + ec.message());
  std::sort(class_dirs.begin(), class_dirs.end());
  if (class_dirs.empty()) {
    throw invalid_argument(what + ": no class sub-folders (expected DIR/<class>/<image>, one sub-folder per class)");
  }
  std::vector<std::string> empty;
  for (const fs::path& class_dir : class_dirs) {
    const int64_t label = static_cast<int64_t>(ds.class_keys.size());
    ds.class_keys.push_back(class_dir.filename().string());
    std::vector<std::string> files;
    for (fs::recursive_directory_iterator it(class_dir, fs::directory_options::follow_directory_symlink, ec), end;
         !ec && it != end; it.increment(ec)) {
      if (it->path().filename().string()[0] == '.') {
        if (it->is_directory(ec)) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file(ec) && has_image_extension(it->path())) {
        files.push_back(fs::absolute(it->path()).lexically_normal().string());
      }
    }
    if (ec) throw invalid_argument(what + ": cannot list " + single_quoted(class_dir.string()) + ": " + ec.message());
    if (files.empty()) {
      empty.push_back(single_quoted(class_dir.filename().string()));
      continue;
    }
    std::sort(files.begin(), files.end());
    for (auto& f : files) ds.items.push_back(LabeledImage{std::move(f), label});
  }
  if (!empty.empty()) {
    throw invalid_argument(what + ": " + std::to_string(empty.size()) + " class folder" + (empty.size() == 1 ? "" : "s") +
                           " without images (" + list_of(empty, options.max_offenders_listed) +
                           "); image files end in .jpg, .jpeg, .png, .ppm, .pgm, .bmp, .tif, .tiff or .webp");
  }
  return ds;
}

bool parse_class_id(const std::string& s, int64_t* out) {
  if (s.empty() || s.size() > 9) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

ClassDataset load_csv_classes(const std::string& file) {
  const std::string what = "csv file " + single_quoted(file);
  const std::vector<CsvRecord> records = parse_csv(read_text_file(file, what), what);
  if (records.empty()) throw invalid_argument(what + ": empty file (expected a header row with columns filepath,label)");
  const CsvRecord& header = records[0];
  int path_col = -1, label_col = -1;
  for (size_t c = 0; c < header.fields.size(); ++c) {
    const std::string name = lower(trim_whitespace(header.fields[c]));
    if (name == "filepath" && path_col < 0) path_col = static_cast<int>(c);
    if (name == "label" && label_col < 0) label_col = static_cast<int>(c);
  }
  std::string missing;
  if (path_col < 0) missing += "'filepath'";
  if (label_col < 0) missing += std::string(missing.empty() ? "" : " and ") + "'label'";
  if (!missing.empty()) {
    throw invalid_argument(what + " line " + std::to_string(header.line) + ": the header row has no " + missing +
                           " column (a header row such as filepath,label is expected; this one has " +
                           std::to_string(header.fields.size()) + " field" + (header.fields.size() == 1 ? "" : "s") +
                           ", not quoted: the file's text is not echoed)");
  }
  const size_t needed = static_cast<size_t>(std::max(path_col, label_col)) + 1;
  const fs::path base = fs::absolute(fs::path(file)).parent_path();
  std::vector<std::pair<std::string, std::string>> rows;  // path, label
  for (size_t r = 1; r < records.size(); ++r) {
    const CsvRecord& rec = records[r];
    const std::string where = what + " line " + std::to_string(rec.line);
    if (rec.fields.size() < needed) {
      throw invalid_argument(where + ": " + std::to_string(rec.fields.size()) + " fields, the header names " +
                             std::to_string(needed) + " columns");
    }
    const std::string path = trim_whitespace(rec.fields[path_col]);
    const std::string label = trim_whitespace(rec.fields[label_col]);
    if (path.empty()) throw invalid_argument(where + ": empty 'filepath'");
    if (label.empty()) throw invalid_argument(where + ": empty 'label'");
    fs::path p(path);
    if (p.is_relative()) p = base / p;
    rows.emplace_back(fs::absolute(p).lexically_normal().string(), label);
  }
  if (rows.empty()) throw invalid_argument(what + ": no rows after the header");

  ClassDataset ds;
  ds.numeric_labels = std::all_of(rows.begin(), rows.end(), [](const auto& row) {
    int64_t id = 0;
    return parse_class_id(row.second, &id);
  });
  if (ds.numeric_labels) {
    int64_t max_id = 0;
    for (auto& [path, label] : rows) {
      int64_t id = 0;
      parse_class_id(label, &id);
      max_id = std::max(max_id, id);
      ds.items.push_back(LabeledImage{std::move(path), id});
    }
    for (int64_t i = 0; i <= max_id; ++i) ds.class_keys.push_back(std::to_string(i));
  } else {
    std::map<std::string, int64_t> ids;
    for (const auto& row : rows) ids.emplace(row.second, 0);
    for (auto& [label, id] : ids) {
      id = static_cast<int64_t>(ds.class_keys.size());
      ds.class_keys.push_back(label);
    }
    for (auto& [path, label] : rows) ds.items.push_back(LabeledImage{std::move(path), ids.at(label)});
  }
  return ds;
}

}  // namespace

std::vector<int64_t> ClassDataset::class_counts() const {
  std::vector<int64_t> counts(class_keys.size(), 0);
  for (const auto& item : items) counts[static_cast<size_t>(item.label)]++;
  return counts;
}

const std::vector<std::string>& class_dataset_schemes() {
  static const std::vector<std::string> schemes{"folder", "csv"};
  return schemes;
}

void check_image_files(const std::vector<std::string>& paths, const std::string& what, size_t max_listed) {
  std::vector<std::string> bad;
  size_t count = 0;
  for (const std::string& path : paths) {
    try {
      check_image_file_header(path);
    } catch (const std::exception& e) {
      ++count;
      if (bad.size() < max_listed) bad.push_back(e.what());
    }
  }
  if (count == 0) return;
  std::string list;
  for (size_t i = 0; i < bad.size(); ++i) list += (i ? "; " : "") + bad[i];
  if (count > bad.size()) list += "; ...";
  throw invalid_argument(what + ": " + std::to_string(count) + " unreadable image" + (count == 1 ? "" : "s") + " (" +
                         list + ")");
}

ClassDataset load_class_dataset(const std::string& spec, const ClassDatasetOptions& options) {
  const size_t colon = spec.find(':');
  const std::string scheme = colon == std::string::npos ? "" : spec.substr(0, colon);
  const std::string rest = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (rest.empty() || (scheme != "folder" && scheme != "csv")) {
    throw invalid_argument("class data set " + single_quoted(spec) + ": expected folder:DIR or csv:FILE");
  }
  if (options.roots != nullptr) options.roots->check(rest, scheme == "folder" ? "class data set folder" : "class data set file");
  ClassDataset ds = scheme == "folder" ? load_folder(rest, options) : load_csv_classes(rest);
  ds.spec = spec;
  if (options.roots != nullptr) {
    std::vector<std::string> paths;
    paths.reserve(ds.items.size());
    for (const auto& item : ds.items) paths.push_back(item.image_path);
    options.roots->check_existing(paths, "image", "class data set " + single_quoted(spec));
  }
  if (options.check_images) {
    std::vector<std::string> paths;
    paths.reserve(ds.items.size());
    for (const auto& item : ds.items) paths.push_back(item.image_path);
    check_image_files(paths, "class data set " + single_quoted(spec), options.max_offenders_listed);
  }
  return ds;
}

}  // namespace refinery
