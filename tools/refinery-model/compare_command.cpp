// `refinery-model compare`: where one model retrieves better than another.
// Embeds a caption data set with both checkpoints, finds the queries (captions
// searching images, images searching captions) that exactly one model gets
// right within its top k, and writes DIR/index.html (a self-contained page,
// thumbnails in DIR/thumbs/) and DIR/compare.json (the same, as data).
// Only builds with the I/O front ends.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/base/atomic_file.h"
#include "core/base/error.h"
#include "core/checkpoint/checkpoint_reader.h"
#include "core/data/caption_dataset.h"
#include "core/embedding/embedder.h"
#include "core/runtime/torch_runtime.h"
#include "tools/refinery-model/commands.h"
#include "tools/refinery-model/retrieval_comparison.h"

namespace refinery::model_tool {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kThumbSide = 160;  // longer side of a thumbnail, pixels
constexpr int kThumbJpegQuality = 85;

struct CompareParams {
  std::vector<std::string> checkpoints;  // A, then B
  std::string data_spec, output, name_a, name_b;
  int k = 5;
  int max_queries = 50;  // per (direction, winner) group
  int batch = 64;
};

// A caption data set flattened: captions in item order, and the links both ways.
struct FlatCaptions {
  std::vector<std::string> images, captions;
  std::vector<std::vector<int64_t>> image_of_caption;  // per caption: {its image}
  std::vector<std::vector<int64_t>> captions_of_image;
};

FlatCaptions flatten(const CaptionDataset& data) {
  FlatCaptions f;
  for (size_t i = 0; i < data.items.size(); ++i) {
    f.images.push_back(data.items[i].image_path);
    f.captions_of_image.emplace_back();
    for (const auto& caption : data.items[i].captions) {
      f.captions_of_image.back().push_back(static_cast<int64_t>(f.captions.size()));
      f.image_of_caption.push_back({static_cast<int64_t>(i)});
      f.captions.push_back(caption);
    }
  }
  return f;
}

// One checkpoint's answers in both directions.
struct ModelRun {
  std::string label, name, checkpoint;
  int64_t embed_dim = 0;
  RetrievalRanking text_to_image, image_to_text;
};

ModelRun run_model(const std::string& label, const std::string& name, const std::string& checkpoint,
                   const FlatCaptions& data, const CompareParams& p, const CommonParams& common) {
  if (!fs::exists(checkpoint)) throw not_found("checkpoint " + label + ": " + checkpoint + ": no such file or folder");
  ModelRun run;
  run.label = label;
  run.name = name;
  run.checkpoint = checkpoint;
  auto model = CheckpointReader::load_model(checkpoint, read_options(common));
  EmbedderOptions o;
  o.batch_size = p.batch;
  o.normalize = true;
  Embedder embedder(model, resolve_device(common.device), o);
  if (!common.quiet) {
    std::fprintf(stderr, "refinery-model: %s (%s): embedding %zu captions and %zu images\n", label.c_str(),
                 name.c_str(), data.captions.size(), data.images.size());
  }
  const auto text = embedder.embed_texts(data.captions);
  const auto image = embedder.embed_image_files(data.images);
  run.embed_dim = text.size(1);
  run.text_to_image = rank_retrieval(text, image, data.image_of_caption, p.k);
  run.image_to_text = rank_retrieval(image, text, data.captions_of_image, p.k);
  return run;
}

// "tiny.safetensors" for a file, the folder's name for an HF folder.
std::string checkpoint_name(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string fixed(double v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string thumb_path(int64_t image) { return "thumbs/" + std::to_string(image) + ".jpg"; }

// Longer side kThumbSide, JPEG. Decoded without EXIF orientation, as the model
// sees the image; resized with LibTorch's antialiased bilinear (PIL's
// thumbnail quality) so the tool needs no OpenCV imgproc.
void write_thumbnail(const std::string& image_path, const fs::path& out_path) {
  cv::Mat bgr = cv::imread(image_path, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  if (bgr.empty()) throw invalid_argument(image_path + ": cannot decode the image for its thumbnail");
  const int longer = std::max(bgr.rows, bgr.cols);
  if (longer != kThumbSide) {
    const auto scaled = [longer](int side) {
      return std::max(1, static_cast<int>(std::lround(static_cast<double>(side) * kThumbSide / longer)));
    };
    const int h = scaled(bgr.rows), w = scaled(bgr.cols);
    auto pixels =
        torch::from_blob(bgr.data, {bgr.rows, bgr.cols, 3}, {static_cast<int64_t>(bgr.step[0]), 3, 1}, torch::kByte)
            .permute({2, 0, 1})
            .unsqueeze(0)
            .to(torch::kFloat);
    namespace F = torch::nn::functional;
    pixels = F::interpolate(pixels, F::InterpolateFuncOptions()
                                        .size(std::vector<int64_t>{h, w})
                                        .mode(torch::kBilinear)
                                        .align_corners(false)
                                        .antialias(longer > kThumbSide));
    pixels = pixels.round().clamp(0, 255).to(torch::kByte).squeeze(0).permute({1, 2, 0}).contiguous();
    bgr = cv::Mat(h, w, CV_8UC3, pixels.data_ptr<uint8_t>()).clone();
  }
  if (!cv::imwrite(out_path.string(), bgr, {cv::IMWRITE_JPEG_QUALITY, kThumbJpegQuality})) {
    throw invalid_argument(out_path.string() + ": cannot write the thumbnail of " + image_path);
  }
}

// A retrieval direction: what its queries are, their ground truth, and both models' rankings.
struct Direction {
  std::string key, title;                                    // "text_to_image", "Text → image"
  bool image_query = false;                                  // queries are images (image->text)
  const std::vector<std::vector<int64_t>>* truth = nullptr;  // per query: the correct candidates
  const RetrievalRanking* a = nullptr;
  const RetrievalRanking* b = nullptr;
};

class GalleryWriter {
 public:
  GalleryWriter(const FlatCaptions& data, const ModelRun& a, const ModelRun& b, const CompareParams& p)
      : data_(data), a_(a), b_(b), p_(p) {
    directions_.push_back(
        {"text_to_image", "Text &rarr; image", false, &data.image_of_caption, &a.text_to_image, &b.text_to_image});
    directions_.push_back(
        {"image_to_text", "Image &rarr; text", true, &data.captions_of_image, &a.image_to_text, &b.image_to_text});
  }

  // The recall values, the groups and their queries, as JSON and as a page;
  // thumbnails of every image the page shows are written on the way.
  void write(const fs::path& dir, bool quiet) {
    fs::create_directories(dir / "thumbs");
    json doc = summary_json();
    json queries = json::array();
    std::string sections;
    for (const auto& d : directions_) {
      for (int w = 0; w < 2; ++w) {
        const ModelRun& winner = w == 0 ? a_ : b_;
        const ModelRun& loser = w == 0 ? b_ : a_;
        const RetrievalRanking& win_rank = w == 0 ? *d.a : *d.b;
        const RetrievalRanking& lose_rank = w == 0 ? *d.b : *d.a;
        const auto group = find_disagreements(win_rank.rank, lose_rank.rank, p_.k, static_cast<size_t>(p_.max_queries));
        doc["groups"].push_back(
            {{"direction", d.key}, {"winner", winner.label}, {"total", group.total}, {"shown", group.shown.size()}});
        const std::string id = d.key + "-" + winner.label;
        sections += "<section id=\"" + id + "\"><h2>" + d.title + ": <span class=\"tag " + winner.label + "\">" +
                    winner.label + "</span> " + html_escape(winner.name) + " right, <span class=\"tag " + loser.label +
                    "\">" + loser.label + "</span> " + html_escape(loser.name) + " wrong <small>" + shown_of(group) +
                    "</small></h2>\n";
        if (group.shown.empty()) sections += "<p class=\"none\">No such queries.</p>\n";
        for (const auto& q : group.shown) {
          queries.push_back(query_json(d, winner.label, q.query));
          sections += query_card(d, winner.label, q.query);
        }
        sections += "</section>\n";
      }
    }
    doc["queries"] = std::move(queries);
    for (int64_t image : thumbs_) write_thumbnail(data_.images[image], dir / thumb_path(image));
    write_file_atomically((dir / "compare.json").string(), doc.dump(2) + "\n");
    write_file_atomically((dir / "index.html").string(), page(doc, sections));
    if (!quiet) {
      std::fprintf(stderr, "refinery-model: wrote %s (%zu queries, %zu thumbnails)\n",
                   (dir / "index.html").string().c_str(), doc["queries"].size(), thumbs_.size());
    }
  }

 private:
  std::vector<int> recall_ks() const {
    std::set<int> ks{1, 5, p_.k};
    return {ks.begin(), ks.end()};
  }

  static std::string shown_of(const DisagreementGroup& g) {
    if (g.shown.size() == g.total) return "(" + std::to_string(g.total) + ")";
    return "(" + std::to_string(g.shown.size()) + " of " + std::to_string(g.total) + " shown)";
  }

  json model_json(const ModelRun& m) const {
    return {{"label", m.label}, {"name", m.name}, {"checkpoint", m.checkpoint}, {"embed_dim", m.embed_dim}};
  }

  json summary_json() const {
    json recall = json::object();
    for (const auto& d : directions_) {
      for (const auto* m : {&a_, &b_}) {
        const RetrievalRanking& r = m == &a_ ? *d.a : *d.b;
        for (int k : recall_ks()) recall[d.key][m->label]["R@" + std::to_string(k)] = recall_at(r.rank, k);
      }
    }
    return {
        {"k", p_.k},
        {"rank", "1 + the number of candidates scoring higher than the best ground-truth partner; correct: rank <= k"},
        {"data", {{"spec", p_.data_spec}, {"images", data_.images.size()}, {"captions", data_.captions.size()}}},
        {"models", {model_json(a_), model_json(b_)}},
        {"recall", recall},
        {"groups", json::array()}};
  }

  // The text or image of candidate/query `index` on the given side.
  json item_json(bool is_image, int64_t index) const {
    if (is_image) return {{"image_index", index}, {"image", data_.images[index]}, {"thumb", thumb_path(index)}};
    return {{"caption_index", index}, {"caption", data_.captions[index]}};
  }

  static bool contains(const std::vector<int64_t>& v, int64_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

  json query_json(const Direction& d, const std::string& winner, int64_t q) const {
    json results = json::object();
    for (const auto* m : {&a_, &b_}) {
      const RetrievalRanking& r = m == &a_ ? *d.a : *d.b;
      json top = json::array();
      for (size_t j = 0; j < r.top[q].size(); ++j) {
        json item = item_json(!d.image_query, r.top[q][j]);
        item["score"] = r.top_scores[q][j];
        item["truth"] = contains((*d.truth)[q], r.top[q][j]);
        top.push_back(std::move(item));
      }
      results[m->label] = {{"rank", r.rank[q] + 1}, {"correct", r.rank[q] < p_.k}, {"top", std::move(top)}};
    }
    json truth = json::array();
    for (int64_t t : (*d.truth)[q]) truth.push_back(item_json(!d.image_query, t));
    return {{"direction", d.key},
            {"winner", winner},
            {"query", item_json(d.image_query, q)},
            {"truth", std::move(truth)},
            {"results", std::move(results)}};
  }

  std::string image_tag(int64_t image, const std::string& css_class) {
    thumbs_.insert(image);
    const std::string name = fs::path(data_.images[image]).filename().string();
    return "<img class=\"" + css_class + "\" src=\"" + thumb_path(image) + "\" alt=\"" + html_escape(name) +
           "\" title=\"" + html_escape(data_.images[image]) + "\">";
  }

  std::string query_card(const Direction& d, const std::string& winner, int64_t q) {
    const auto& truth = (*d.truth)[q];
    std::string h = "<article class=\"card\" data-direction=\"" + d.key + "\" data-winner=\"" + winner + "\">\n";
    h += "<div class=\"query\">";
    if (d.image_query) {
      h += "<div class=\"kind\">Image #" + std::to_string(q) + "</div>" + image_tag(q, "query-image");
      h += "<div class=\"kind\">its captions</div><ul class=\"truth-list\">";
      for (int64_t t : truth) h += "<li>" + html_escape(data_.captions[t]) + "</li>";
      h += "</ul>";
    } else {
      h += "<div class=\"kind\">Caption #" + std::to_string(q) + "</div><p class=\"query-text\">" +
           html_escape(data_.captions[q]) + "</p><div class=\"kind\">its image</div>";
      for (int64_t t : truth) h += image_tag(t, "truth-image");
    }
    h += "</div>\n<div class=\"answers\">\n";
    for (const auto* m : {&a_, &b_}) {
      const RetrievalRanking& r = m == &a_ ? *d.a : *d.b;
      const bool correct = r.rank[q] < p_.k;
      h += "<div class=\"answer " + std::string(correct ? "right" : "wrong") +
           "\"><div class=\"who\"><span class=\"tag " + m->label + "\">" + m->label + "</span> <span class=\"name\">" +
           html_escape(m->name) + "</span><div class=\"rank\">" + (correct ? "&#10003; " : "&#10007; ") + "rank " +
           std::to_string(r.rank[q] + 1) + "</div></div><ol class=\"results\">";
      for (size_t j = 0; j < r.top[q].size(); ++j) {
        const int64_t c = r.top[q][j];
        const bool hit = contains(truth, c);
        h += "<li class=\"" + std::string(d.image_query ? "text" : "image") + (hit ? " hit" : "") + "\">";
        h += "<span class=\"pos\">" + std::to_string(j + 1) + "</span>";
        if (d.image_query) {
          h += "<span class=\"caption\">" + html_escape(data_.captions[c]) + "</span>";
        } else {
          h += image_tag(c, "result-image") + "<span class=\"file\">" +
               html_escape(fs::path(data_.images[c]).filename().string()) + "</span>";
        }
        h += "<span class=\"score\">" + fixed(r.top_scores[q][j], 3) + "</span></li>";
      }
      h += "</ol></div>\n";
    }
    h += "</div>\n</article>\n";
    return h;
  }

  std::string page(const json& doc, const std::string& sections) const {
    std::string h = R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>)" + html_escape("compare: " + a_.name + " vs " + b_.name) +
                    R"(</title>
<style>
body {
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; padding: 16px 24px;
  color: #1d2330; background: #f4f5f7;
}
h1 { font-size: 20px; margin: 0 0 12px; }
h2 { font-size: 17px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #d5d9e0; }
h2 small { font-weight: normal; color: #5b6475; }
table { border-collapse: collapse; background: #fff; margin: 0 16px 12px 0; }
th, td { border: 1px solid #d5d9e0; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #eceef2; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; }
.summary { display: flex; flex-wrap: wrap; align-items: flex-start; }
.path { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
.note { color: #5b6475; max-width: 900px; }
.tag {
  display: inline-block; min-width: 1.4em; text-align: center; border-radius: 4px; color: #fff;
  font-weight: 700; padding: 0 4px;
}
.tag.A { background: #2f6fdb; } .tag.B { background: #c2571a; }
.card {
  display: grid; grid-template-columns: 220px 1fr; gap: 16px; background: #fff; border: 1px solid #d5d9e0;
  border-radius: 8px; padding: 12px; margin: 0 0 14px;
}
.query { border-right: 1px solid #e3e6eb; padding-right: 12px; }
.kind { font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: #5b6475; margin: 2px 0 4px; }
.query-text { font-size: 15px; font-weight: 600; margin: 0 0 10px; overflow-wrap: anywhere; }
.query-image, .truth-image {
  display: block; max-width: 160px; max-height: 160px; border: 3px solid #1d2330; border-radius: 4px;
  margin-bottom: 8px;
}
.truth-image { border-color: #2e9d48; }
.truth-list { margin: 0; padding-left: 18px; overflow-wrap: anywhere; }
.answers { display: grid; gap: 10px; min-width: 0; }
.answer {
  display: grid; grid-template-columns: 190px 1fr; gap: 10px; align-items: start; padding: 8px;
  border-radius: 6px;
}
.answer.right { background: #eef8f0; } .answer.wrong { background: #fbefee; }
.who .name { font-weight: 600; overflow-wrap: break-word; }
.rank { margin-top: 4px; font-weight: 700; }
.right .rank { color: #23803a; } .wrong .rank { color: #b3261e; }
.results { display: flex; flex-wrap: wrap; gap: 8px; list-style: none; margin: 0; padding: 0; min-width: 0; }
.results li { position: relative; background: #fff; border: 3px solid #d5d9e0; border-radius: 6px; padding: 4px; }
.results li.hit { border-color: #2e9d48; }
.results li.image { width: 128px; padding-bottom: 2px; }
.result-image { width: 128px; height: 128px; object-fit: contain; display: block; }
.file { display: block; font-size: 11px; color: #5b6475; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
  max-width: 82px; }
.results li.text { width: 200px; min-height: 60px; padding: 4px 6px 16px; font-size: 13px; overflow-wrap: anywhere; }
.results li.text.hit .caption { font-weight: 700; }
.pos {
  position: absolute; top: -8px; left: -8px; background: #1d2330; color: #fff; border-radius: 10px;
  font-size: 11px; min-width: 18px; text-align: center; padding: 0 3px;
}
.hit .pos { background: #2e9d48; }
.score {
  position: absolute; right: 4px; bottom: 0; font-size: 11px; color: #5b6475;
  font-variant-numeric: tabular-nums;
}
.none { color: #5b6475; font-style: italic; }
@media (max-width: 1000px) {
  .card, .answer { grid-template-columns: 1fr; }
  .query { border-right: 0; border-bottom: 1px solid #e3e6eb; padding: 0 0 10px; }
}
</style></head>
<body>
)";
    h += "<h1>Retrieval compared: <span class=\"tag A\">A</span> " + html_escape(a_.name) +
         " vs <span class=\"tag B\">B</span> " + html_escape(b_.name) + "</h1>\n";
    h += "<div class=\"summary\">\n<table><tr><th></th><th>checkpoint</th><th>embed dim</th></tr>";
    for (const auto* m : {&a_, &b_}) {
      h += "<tr><th><span class=\"tag " + m->label + "\">" + m->label + "</span> " + html_escape(m->name) +
           "</th><td class=\"path\">" + html_escape(m->checkpoint) + "</td><td class=\"num\">" +
           std::to_string(m->embed_dim) + "</td></tr>";
    }
    h += "<tr><th>data</th><td class=\"path\">" + html_escape(p_.data_spec) + "</td><td>" +
         std::to_string(data_.images.size()) + " images, " + std::to_string(data_.captions.size()) +
         " captions</td></tr></table>\n";

    h += "<table><tr><th>direction</th><th>model</th>";
    for (int k : recall_ks()) h += "<th>R@" + std::to_string(k) + "</th>";
    h += "</tr>";
    for (const auto& d : directions_) {
      for (const auto* m : {&a_, &b_}) {
        const auto* other = m == &a_ ? &b_ : &a_;
        h += "<tr>" + std::string(m == &a_ ? "<th rowspan=\"2\">" + d.title + "</th>" : "") + "<td><span class=\"tag " +
             m->label + "\">" + m->label + "</span></td>";
        for (int k : recall_ks()) {
          const std::string key = "R@" + std::to_string(k);
          const double mine = doc.at("recall").at(d.key).at(m->label).at(key).get<double>();
          const double theirs = doc.at("recall").at(d.key).at(other->label).at(key).get<double>();
          h +=
              "<td class=\"num" + std::string(mine > theirs ? " best" : "") + "\">" + fixed(100.0 * mine, 1) + "%</td>";
        }
        h += "</tr>";
      }
    }
    h += "</table>\n";

    h += "<table><tr><th>direction</th><th>A right, B wrong</th><th>B right, A wrong</th></tr>";
    for (const auto& d : directions_) {
      h += "<tr><th>" + d.title + "</th>";
      for (const auto& g : doc.at("groups")) {
        if (g["direction"] != d.key) continue;
        const std::string id = d.key + "-" + g["winner"].get<std::string>();
        h += "<td class=\"num\"><a href=\"#" + id + "\">" + std::to_string(g["total"].get<size_t>()) + "</a></td>";
      }
      h += "</tr>";
    }
    h += "</table>\n</div>\n";
    h += "<p class=\"note\">A query is <b>right</b> when a ground-truth partner (a caption's own image; any of an "
         "image's captions) is among the model's top " +
         std::to_string(p_.k) +
         ". <b>Rank</b> is 1 + the number of candidates the model scores higher than the best ground-truth partner. "
         "Green borders mark ground-truth partners; numbers under results are cosine similarities. Each group "
         "lists the queries whose ranks differ most first (at most " +
         std::to_string(p_.max_queries) + " per group).</p>\n";
    h += sections;
    h += "</body></html>\n";
    return h;
  }

  const FlatCaptions& data_;
  const ModelRun& a_;
  const ModelRun& b_;
  const CompareParams& p_;
  std::vector<Direction> directions_;
  std::set<int64_t> thumbs_;  // images the page shows
};

int run_compare(const CompareParams& p, const CommonParams& common) {
  if (p.checkpoints.size() != 2) {
    throw invalid_argument("--checkpoint: give it exactly twice (A, then B); got " +
                           std::to_string(p.checkpoints.size()));
  }
  if (p.k < 1) throw invalid_argument("--k: must be at least 1, got " + std::to_string(p.k));
  if (p.max_queries < 0) throw invalid_argument("--max-queries: must be >= 0, got " + std::to_string(p.max_queries));
  if (p.batch < 1) throw invalid_argument("--batch: must be at least 1, got " + std::to_string(p.batch));
  const auto data = flatten(load_caption_dataset(p.data_spec));
  setup_runtime(common);
  const std::string name_a = p.name_a.empty() ? checkpoint_name(p.checkpoints[0]) : p.name_a;
  const std::string name_b = p.name_b.empty() ? checkpoint_name(p.checkpoints[1]) : p.name_b;
  const ModelRun a = run_model("A", name_a, p.checkpoints[0], data, p, common);
  const ModelRun b = run_model("B", name_b, p.checkpoints[1], data, p, common);
  GalleryWriter(data, a, b, p).write(p.output, common.quiet);
  return 0;
}

}  // namespace

void add_compare_command(CLI::App& app, Command& command) {
  auto params = std::make_shared<CompareParams>();
  CompareParams& cmp = *params;
  CommonParams& common = command.common;
  auto* cmd = app.add_subcommand("compare",
                                 "HTML gallery of the retrieval queries one checkpoint gets right and the other wrong");
  cmd->add_option("--checkpoint", cmp.checkpoints, "CKPT, given twice: model A, then model B")->required();
  cmd->add_option("--data", cmp.data_spec, "Caption data set: coco:ANNOTATIONS.json:IMAGE_DIR, csv:FILE or jsonl:FILE")
      ->required();
  cmd->add_option("--output", cmp.output, "Folder for index.html, compare.json and thumbs/ (created if missing)")
      ->required();
  cmd->add_option("--k", cmp.k, "A query is right when a ground-truth partner is in the top k")->capture_default_str();
  cmd->add_option("--max-queries", cmp.max_queries, "Queries listed per (direction, winner) group")
      ->capture_default_str();
  cmd->add_option("--name-a", cmp.name_a, "Name shown for model A (default: its file name)");
  cmd->add_option("--name-b", cmp.name_b, "Name shown for model B (default: its file name)");
  cmd->add_option("--batch", cmp.batch, "Items per forward pass")->capture_default_str();
  add_common(cmd, common, true);
  cmd->callback(
      [&command, params] { command.run = [&command, params] { return run_compare(*params, command.common); }; });
}

}  // namespace refinery::model_tool
