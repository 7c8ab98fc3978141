#include "core/eval/zeroshot_prompts.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "core/base/assets.h"
#include "core/base/error.h"

namespace refinery {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw invalid_argument("cannot open " + path);
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw invalid_argument(path + ": invalid JSON: " + without_quoted_input(e.what()));
  }
}

std::vector<std::string> string_list(const json& j, const std::string& where) {
  if (!j.is_array()) throw invalid_argument(where + ": expected an array of strings");
  std::vector<std::string> out;
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_string()) throw invalid_argument(where + "[" + std::to_string(i) + "] is not a string");
    out.push_back(j[i].get<std::string>());
  }
  return out;
}

const std::map<std::string, PromptSet>& prompt_sets() {
  static std::once_flag once;
  static std::map<std::string, PromptSet> sets;  // by lower-case name
  std::call_once(once, [] {
    const std::string path = assets_dir() + "/zeroshot_prompts.json";
    const json j = read_json_file(path);
    if (!j.is_object()) throw internal_error(path + ": expected an object of data sets");
    for (const auto& [name, value] : j.items()) {
      PromptSet set;
      set.name = name;
      // A class may be a list of synonyms (FacialEmotionRecognition2013); its
      // first name stands for it.
      json classes = value.value("classes", json::array());
      for (auto& c : classes) {
        if (c.is_array() && !c.empty()) c = json(c[0]);
      }
      set.classes = string_list(classes, path + ": " + name + ".classes");
      set.templates = string_list(value.value("templates", json::array()), path + ": " + name + ".templates");
      sets.emplace(lower(name), std::move(set));
    }
  });
  return sets;
}

}  // namespace

std::vector<std::string> zeroshot_prompt_set_names() {
  std::vector<std::string> names;
  for (const auto& [key, set] : prompt_sets()) names.push_back(set.name);
  return names;
}

const PromptSet& zeroshot_prompt_set(const std::string& name) {
  const auto& sets = prompt_sets();
  auto it = sets.find(lower(name));
  if (it == sets.end()) {
    std::string known;
    for (const auto& n : zeroshot_prompt_set_names()) known += (known.empty() ? "" : ", ") + n;
    throw not_found("unknown data set name '" + name + "' (known: " + known + ")");
  }
  return it->second;
}

void validate_prompt_templates(const std::vector<std::string>& templates) {
  if (templates.empty()) throw invalid_argument("no prompt templates");
  for (size_t i = 0; i < templates.size(); ++i) {
    const std::string& t = templates[i];
    if (t.find("{}") == std::string::npos && t.find("{classname}") == std::string::npos) {
      throw invalid_argument("prompt template " + std::to_string(i) + " \"" + t +
                             "\" has no place for the class name ({} or {classname})");
    }
  }
}

std::vector<std::string> load_prompt_templates(const std::string& spec) {
  std::error_code ec;
  std::vector<std::string> templates;
  if (fs::is_regular_file(spec, ec)) {
    const json j = read_json_file(spec);
    templates = j.is_object() && j.contains("templates") ? string_list(j["templates"], spec + ": templates")
                                                          : string_list(j, spec);
    if (templates.empty()) throw invalid_argument(spec + ": no templates");
  } else {
    const auto& sets = prompt_sets();
    auto it = sets.find(lower(spec));
    if (it == sets.end()) {
      throw invalid_argument("templates '" + spec + "': no such file, and not a data set name of zeroshot_prompts.json");
    }
    templates = it->second.templates;
    if (templates.empty()) throw invalid_argument("data set " + it->second.name + " has no templates");
  }
  validate_prompt_templates(templates);
  return templates;
}

std::string fill_prompt_template(const std::string& templ, const std::string& classname) {
  std::string out;
  out.reserve(templ.size() + classname.size());
  for (size_t i = 0; i < templ.size();) {
    if (templ.compare(i, 2, "{}") == 0) {
      out += classname;
      i += 2;
    } else if (templ.compare(i, 11, "{classname}") == 0) {
      out += classname;
      i += 11;
    } else {
      out += templ[i++];
    }
  }
  return out;
}

}  // namespace refinery
