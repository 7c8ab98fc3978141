// bench --text on real captions (--texts FILE.json): needs the tokenizer, so
// this file only builds with the I/O front ends (not REFINERY_TORCH_ONLY).
#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/base/error.h"
#include "core/text/bpe_tokenizer.h"
#include "tools/refinery-model/tool_common.h"

namespace refinery::model_tool {

at::Tensor bench_text_tokens(const std::string& texts_file, int batch, int context_length) {
  const auto texts = read_texts_file(texts_file);
  if (texts.empty()) throw invalid_argument(texts_file + ": no texts");
  std::vector<std::string> batch_texts;
  for (int i = 0; i < batch; ++i) batch_texts.push_back(texts[i % texts.size()]);
  auto ids = BpeTokenizer::default_instance().tokenize_batch(batch_texts, context_length, true);
  return torch::from_blob(ids.data(), {batch, context_length}, torch::kInt).clone();
}

}  // namespace refinery::model_tool
