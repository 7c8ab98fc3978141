// Zero-shot classification over a labelled image set (METHOD.md
// "Evaluation"): class names from the data, a names file or a shipped data
// set, prompts from a template (the paper's single "a photo of {}") or a
// template ensemble averaged as CLIP does, images assigned to the class of
// highest cosine.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/data/class_dataset.h"
#include "core/embedding/embedder.h"

namespace refinery {

// Where class names come from; the first that is set wins.
struct ClassNameOptions {
  std::string classnames_file;       // JSON object {key: name}, JSON array by class id, or a name per line
  std::string dataset;               // a data set of zeroshot_prompts.json, by class id
  std::vector<std::string> classes;  // subset of the file's or data set's classes (ids or names), in data class order
};

// The display name of every class of `data`, by class id: from the options,
// else the class keys; "_" becomes " " (the reference protocol). A csv set
// with integer labels may get more names than its largest label (classes
// without images stay in the classifier). INVALID_ARGUMENT naming the item
// for a names file that cannot be read or lacks a key, an unknown subset
// entry, a subset without a name list, or a count that does not match the
// data's classes (saying what to give).
std::vector<std::string> resolve_class_names(const ClassDataset& data, const ClassNameOptions& options);

// [C, D] float32 CPU, rows L2-normalised: for each class the prompts
// fill_prompt_template(t, name) of every template t, embedded, each
// normalised, averaged, normalised again (with one template: the normalised
// prompt feature). All C * T prompts go through the model in batches.
at::Tensor build_zeroshot_classifier(Embedder& embedder, const std::vector<std::string>& class_names,
                                     const std::vector<std::string>& templates, const EmbedProgress& progress = {});

// Classifiers built once per (model, class names, templates) and reused: a
// suite's tasks over the same classes, or a server evaluating one model
// again. `model_key` names the weights (e.g. "name@version" or a path).
class ZeroShotClassifierCache {
 public:
  // Beyond max_entries classifiers, the least recently used is dropped
  // (an ImageNet classifier of a ViT-B/32 is 2 MB).
  explicit ZeroShotClassifierCache(size_t max_entries = 32) : max_entries_(max_entries) {}
  at::Tensor get_or_build(const std::string& model_key, Embedder& embedder, const std::vector<std::string>& class_names,
                          const std::vector<std::string>& templates, const EmbedProgress& progress = {},
                          bool* built = nullptr);
  size_t size() const;

 private:
  struct Entry {
    at::Tensor classifier;
    uint64_t last_used = 0;
  };
  size_t max_entries_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> classifiers_;
  uint64_t clock_ = 0;
};

struct ClassAccuracy {
  int64_t images = 0;
  int64_t correct = 0;  // top-1
};

struct Confusion {
  int64_t true_class = 0;
  int64_t predicted_class = 0;
  int64_t count = 0;
};

struct ZeroShotResult {
  int64_t n = 0;
  double top1 = 0;                   // fractions in [0, 1]
  double top5 = 0;                   // top-min(5, C)
  double mean_per_class_recall = 0;  // mean over classes with images of correct / images
  std::vector<ClassAccuracy> per_class;  // by class id
  std::vector<Confusion> confusions;     // the most frequent (true != predicted) pairs, most first
};

// image_features [N, D] (raw or normalised), labels[i] in [0, C),
// classifier [C, D] from build_zeroshot_classifier. Cosine scores in
// float32. An image is a hit at k when fewer than k classes score strictly
// above its own (ties count in its favour, as in alignment_metrics.h); the
// predicted class of a confusion is the first highest. INVALID_ARGUMENT for
// mismatched shapes or a label out of range (naming the row).
ZeroShotResult evaluate_zeroshot(const at::Tensor& image_features, const std::vector<int64_t>& labels,
                                 const at::Tensor& classifier, size_t max_confusions = 10);

}  // namespace refinery
