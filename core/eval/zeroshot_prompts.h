// Zero-shot prompts: CLIP's class names and prompt templates per data set
// (assets/zeroshot_prompts.json: {"ImageNet": {"classes": [...],
// "templates": [...]}, ...}, 27 sets), template files, and how a template
// and a class name make a prompt.
//
// A template holds the class name's place as "{}" or "{classname}", e.g.
// "a photo of {}" (the paper's protocol, METHOD.md) or CLIP's
// "a bad photo of a {}.".
#pragma once

#include <string>
#include <vector>

namespace refinery {

// The paper's single prompt.
inline constexpr const char* kDefaultPromptTemplate = "a photo of {}";

struct PromptSet {
  std::string name;                    // as spelled in the file
  std::vector<std::string> classes;    // by class id (of a list of synonyms, the first)
  std::vector<std::string> templates;
};

// The set named `name` (case-insensitive) in the shipped prompts file, read
// once. NOT_FOUND for an unknown name, listing the known ones.
const PromptSet& zeroshot_prompt_set(const std::string& name);
std::vector<std::string> zeroshot_prompt_set_names();

// A template list from FILE (a JSON array of strings, or an object with a
// "templates" array), or, when no such file exists and `spec` names a shipped
// set, that set's templates ("ImageNet": CLIP's 80). INVALID_ARGUMENT naming
// the file or the name otherwise, and for an empty list or a template
// without a placeholder.
std::vector<std::string> load_prompt_templates(const std::string& spec);

// Checks that every template holds "{}" or "{classname}" (naming the first
// that does not) and that the list is not empty.
void validate_prompt_templates(const std::vector<std::string>& templates);

// The template with every "{}" / "{classname}" replaced by the class name.
std::string fill_prompt_template(const std::string& templ, const std::string& classname);

}  // namespace refinery
