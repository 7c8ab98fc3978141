// `refinery-model tokenize`: CLIP's BPE tokens of texts, as JSON rows or a
// .safetensors file. Only builds with the I/O front ends.
#include <cstdint>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/safetensors/safetensors.h"
#include "core/text/bpe_tokenizer.h"
#include "tools/refinery-model/commands.h"

namespace refinery::model_tool {
namespace {

using nlohmann::json;

struct TokenizeParams {
  std::vector<std::string> texts;
  std::string texts_file, output;
  int context_length = 77;
  bool no_truncate = false;
};

int run_tokenize(const TokenizeParams& p) {
  std::vector<std::string> texts = p.texts;
  if (!p.texts_file.empty()) {
    if (!texts.empty()) throw invalid_argument("give texts as arguments or --texts FILE.json, not both");
    texts = read_texts_file(p.texts_file);
  }
  if (texts.empty()) throw invalid_argument("no texts given (arguments or --texts FILE.json)");
  const auto& tok = BpeTokenizer::default_instance();
  auto ids = tok.tokenize_batch(texts, p.context_length, !p.no_truncate);
  const auto n = static_cast<int64_t>(texts.size());
  if (!p.output.empty()) {
    SafetensorsWriter w;
    w.add_int32("tokens", {n, p.context_length}, ids.data());
    w.write(p.output);
    return 0;
  }
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int32_t> row(ids.begin() + i * p.context_length, ids.begin() + (i + 1) * p.context_length);
    std::cout << json(row).dump() << "\n";
  }
  return 0;
}

}  // namespace

void add_tokenize_command(CLI::App& app, Command& command) {
  auto params = std::make_shared<TokenizeParams>();
  TokenizeParams& tok = *params;
  auto* tok_cmd = app.add_subcommand("tokenize", "Tokenize texts with CLIP's BPE (77 tokens, SOT/EOT)");
  tok_cmd->add_option("texts", tok.texts, "TEXT...");
  tok_cmd->add_option("--texts", tok.texts_file, "FILE.json, a JSON array of strings");
  tok_cmd->add_option("--output", tok.output, "Write `tokens` [N, 77] int32 to this .safetensors");
  tok_cmd->add_option("--context-length", tok.context_length, "Tokens per row")->capture_default_str();
  tok_cmd->add_flag("--no-truncate", tok.no_truncate, "Reject over-long texts instead of truncating");
  tok_cmd->callback([&command, params] { command.run = [params] { return run_tokenize(*params); }; });
}

}  // namespace refinery::model_tool
