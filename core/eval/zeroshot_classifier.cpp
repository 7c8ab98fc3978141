#include "core/eval/zeroshot_classifier.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/base/error.h"
#include "core/eval/zeroshot_prompts.h"

namespace refinery {
namespace {

using nlohmann::json;

std::string underscores_to_spaces(std::string s) {
  std::replace(s.begin(), s.end(), '_', ' ');
  return s;
}

// Names from a file: a JSON object {key: name} (mapped through the data's
// keys), a JSON array, or plain text with one name per line.
std::vector<std::string> names_from_file(const std::string& path, const ClassDataset& data, bool* by_key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw invalid_argument("class names file " + single_quoted(path) + ": cannot be opened");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string what = "class names file " + single_quoted(path);
  *by_key = false;
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (text[first] == '{' || text[first] == '[')) {
    json j;
    try {
      j = json::parse(text);
    } catch (const json::exception& e) {
      throw invalid_argument(what + ": invalid JSON: " + without_quoted_input(e.what()));
    }
    std::vector<std::string> names;
    if (j.is_object()) {
      *by_key = true;
      std::vector<std::string> missing;
      for (const std::string& key : data.class_keys) {
        auto it = j.find(key);
        if (it == j.end() || !it->is_string()) {
          missing.push_back(single_quoted(key));
          continue;
        }
        names.push_back(it->get<std::string>());
      }
      if (!missing.empty()) {
        std::string list;
        for (size_t i = 0; i < missing.size() && i < 5; ++i) list += (i ? ", " : "") + missing[i];
        if (missing.size() > 5) list += ", ...";
        throw invalid_argument(what + ": no name for " + std::to_string(missing.size()) + " class" +
                               (missing.size() == 1 ? "" : "es") + " of " + data.spec + " (" + list + ")");
      }
      return names;
    }
    for (size_t i = 0; i < j.size(); ++i) {
      if (!j[i].is_string()) throw invalid_argument(what + ": entry " + std::to_string(i) + " is not a string");
      names.push_back(j[i].get<std::string>());
    }
    return names;
  }
  std::vector<std::string> names;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  return names;
}

std::vector<std::string> apply_subset(const std::vector<std::string>& base, const std::vector<std::string>& subset,
                                      const std::string& source) {
  std::vector<std::string> out;
  out.reserve(subset.size());
  for (const std::string& entry : subset) {
    const bool numeric = !entry.empty() && std::all_of(entry.begin(), entry.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (numeric && entry.size() <= 9) {
      const size_t id = std::stoul(entry);
      if (id >= base.size()) {
        throw invalid_argument("class subset entry " + entry + " is not a class id of " + source + " (0.." +
                               std::to_string(base.size() - 1) + ")");
      }
      out.push_back(base[id]);
      continue;
    }
    auto it = std::find(base.begin(), base.end(), entry);
    if (it == base.end()) throw invalid_argument("class subset entry " + single_quoted(entry) + " is not a class name of " + source);
    out.push_back(*it);
  }
  return out;
}

}  // namespace

std::vector<std::string> resolve_class_names(const ClassDataset& data, const ClassNameOptions& options) {
  std::vector<std::string> names;
  std::string source;
  bool by_key = false;
  if (!options.classnames_file.empty()) {
    names = names_from_file(options.classnames_file, data, &by_key);
    source = "class names file " + single_quoted(options.classnames_file);
  } else if (!options.dataset.empty()) {
    names = zeroshot_prompt_set(options.dataset).classes;
    source = "data set " + zeroshot_prompt_set(options.dataset).name;
    if (names.empty()) throw invalid_argument(source + " has no class names");
  }
  if (!options.classes.empty()) {
    if (names.empty() || by_key) {
      throw invalid_argument("a class subset needs a list to pick from: a data set name (--dataset) or a names file "
                             "listing the names by class id");
    }
    names = apply_subset(names, options.classes, source);
    source += " (subset of " + std::to_string(names.size()) + ")";
  }
  if (names.empty()) {
    names = data.class_keys;
    source = "the data's class keys";
  }
  const size_t need = data.class_keys.size();
  if (names.size() != need && !(data.numeric_labels && names.size() > need)) {
    throw invalid_argument(data.spec + " has " + std::to_string(need) + " classes, but " + source + " gives " +
                           std::to_string(names.size()) + " names; give the class subset the data holds (--classes, "
                           "ids or names) or a names file for its classes");
  }
  for (auto& n : names) n = underscores_to_spaces(n);
  return names;
}

at::Tensor build_zeroshot_classifier(Embedder& embedder, const std::vector<std::string>& class_names,
                                     const std::vector<std::string>& templates, const EmbedProgress& progress) {
  if (class_names.empty()) throw invalid_argument("zero-shot classifier: no class names");
  validate_prompt_templates(templates);
  const int64_t c = static_cast<int64_t>(class_names.size());
  const int64_t t = static_cast<int64_t>(templates.size());
  std::vector<std::string> prompts;
  prompts.reserve(static_cast<size_t>(c * t));
  for (const auto& name : class_names) {
    for (const auto& templ : templates) prompts.push_back(fill_prompt_template(templ, name));
  }
  namespace F = torch::nn::functional;
  const auto unit = F::NormalizeFuncOptions().dim(-1);
  at::Tensor features = F::normalize(embedder.embed_texts(prompts, progress), unit);  // [C*T, D]
  if (t == 1) return features.contiguous();
  return F::normalize(features.view({c, t, -1}).mean(1), unit).contiguous();
}

at::Tensor ZeroShotClassifierCache::get_or_build(const std::string& model_key, Embedder& embedder,
                                                 const std::vector<std::string>& class_names,
                                                 const std::vector<std::string>& templates,
                                                 const EmbedProgress& progress, bool* built) {
  std::string key = model_key;
  key += '\x1e';
  for (const auto& n : class_names) key += n + '\x1f';
  key += '\x1e';
  for (const auto& t : templates) key += t + '\x1f';
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = classifiers_.find(key);
    if (it != classifiers_.end()) {
      it->second.last_used = ++clock_;
      if (built) *built = false;
      return it->second.classifier;
    }
  }
  at::Tensor classifier = build_zeroshot_classifier(embedder, class_names, templates, progress);
  std::lock_guard<std::mutex> lock(mu_);
  classifiers_[key] = Entry{classifier, ++clock_};
  while (classifiers_.size() > std::max<size_t>(max_entries_, 1)) {
    auto lru = classifiers_.begin();
    for (auto it = classifiers_.begin(); it != classifiers_.end(); ++it) {
      if (it->second.last_used < lru->second.last_used) lru = it;
    }
    classifiers_.erase(lru);
  }
  if (built) *built = true;
  return classifier;
}

size_t ZeroShotClassifierCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return classifiers_.size();
}

ZeroShotResult evaluate_zeroshot(const at::Tensor& image_features, const std::vector<int64_t>& labels,
                                 const at::Tensor& classifier, size_t max_confusions) {
  if (image_features.dim() != 2 || classifier.dim() != 2 || image_features.size(1) != classifier.size(1)) {
    std::ostringstream s;
    s << "zero-shot: image features " << image_features.sizes() << " and classifier " << classifier.sizes()
      << " must be [N, D] and [C, D]";
    throw invalid_argument(s.str());
  }
  const int64_t n = image_features.size(0);
  const int64_t c = classifier.size(0);
  if (static_cast<int64_t>(labels.size()) != n) {
    throw invalid_argument("zero-shot: " + std::to_string(labels.size()) + " labels for " + std::to_string(n) + " images");
  }
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || labels[i] >= c) {
      throw invalid_argument("zero-shot: label " + std::to_string(labels[i]) + " of image " + std::to_string(i) +
                             " is not a class id in [0, " + std::to_string(c) + ")");
    }
  }
  ZeroShotResult r;
  r.n = n;
  r.per_class.assign(static_cast<size_t>(c), ClassAccuracy{});
  if (n == 0) return r;
  namespace F = torch::nn::functional;
  torch::NoGradGuard no_grad;
  const at::Tensor images = F::normalize(image_features.to(torch::kFloat32), F::NormalizeFuncOptions().dim(1));
  const at::Tensor weights = classifier.to(images.device(), torch::kFloat32);
  const at::Tensor label_t = torch::tensor(labels, torch::kInt64);
  int64_t top1 = 0, top5 = 0;
  const int64_t k5 = std::min<int64_t>(5, c);
  std::map<std::pair<int64_t, int64_t>, int64_t> confused;
  constexpr int64_t kRows = 4096;
  for (int64_t r0 = 0; r0 < n; r0 += kRows) {
    const int64_t rows = std::min(kRows, n - r0);
    const at::Tensor scores = images.narrow(0, r0, rows).matmul(weights.t()).cpu();  // [rows, C]
    const at::Tensor own = scores.gather(1, label_t.narrow(0, r0, rows).unsqueeze(1));
    const at::Tensor better = (scores > own).sum(1);
    const at::Tensor predicted = scores.argmax(1);
    const auto better_a = better.accessor<int64_t, 1>();
    const auto predicted_a = predicted.accessor<int64_t, 1>();
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t label = labels[static_cast<size_t>(r0 + i)];
      ClassAccuracy& pc = r.per_class[static_cast<size_t>(label)];
      pc.images++;
      if (better_a[i] < 1) {
        ++top1;
        pc.correct++;
      } else {
        confused[{label, predicted_a[i]}]++;
      }
      if (better_a[i] < k5) ++top5;
    }
  }
  r.top1 = static_cast<double>(top1) / static_cast<double>(n);
  r.top5 = static_cast<double>(top5) / static_cast<double>(n);
  double recall_sum = 0;
  int64_t classes_with_images = 0;
  for (const auto& pc : r.per_class) {
    if (pc.images == 0) continue;
    recall_sum += static_cast<double>(pc.correct) / static_cast<double>(pc.images);
    ++classes_with_images;
  }
  r.mean_per_class_recall = recall_sum / static_cast<double>(classes_with_images);
  for (const auto& [pair, count] : confused) {
    if (pair.first != pair.second) r.confusions.push_back(Confusion{pair.first, pair.second, count});
  }
  std::stable_sort(r.confusions.begin(), r.confusions.end(),
                   [](const Confusion& a, const Confusion& b) { return a.count > b.count; });
  if (r.confusions.size() > max_confusions) r.confusions.resize(max_confusions);
  return r;
}

}  // namespace refinery
