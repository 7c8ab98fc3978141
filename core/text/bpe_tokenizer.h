// CLIP's byte-pair-encoding tokenizer, equal to OpenAI's simple_tokenizer.py
// plus clip.tokenize: the same cleaning (see text_cleaner.h), the same
// pre-split pattern, the same byte-level BPE over the same 49,408-entry
// vocabulary, so the ids match the reference's for every text.
//
// The object is immutable after construction apart from an internal cache of
// BPE results, which is synchronised: one tokenizer serves many threads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace refinery {

class BpeTokenizer {
 public:
  static constexpr int32_t kSot = 49406;  // <|startoftext|>
  static constexpr int32_t kEot = 49407;  // <|endoftext|>
  static constexpr int kContextLength = 77;
  static constexpr size_t kVocabSize = 49408;

  // Reads the merge list (gzip, as shipped with CLIP). Throws refinery::Error
  // naming the path: NOT_FOUND when it cannot be opened, INVALID_ARGUMENT
  // when it is not gzip, is damaged or is not a CLIP merge list.
  explicit BpeTokenizer(const std::string& merges_gz_path);
  ~BpeTokenizer();
  BpeTokenizer(const BpeTokenizer&) = delete;
  BpeTokenizer& operator=(const BpeTokenizer&) = delete;

  // The tokenizer for assets_dir()/bpe_simple_vocab_16e6.txt.gz,
  // loaded on first use.
  static const BpeTokenizer& default_instance();

  size_t vocab_size() const { return tokens_.size(); }

  // Cleaned and BPE-encoded ids, without <|startoftext|> / <|endoftext|>.
  std::vector<int32_t> encode(const std::string& text) const;

  // <|startoftext|> + ids + <|endoftext|>, zero-padded to context_length.
  // A longer text is cut with <|endoftext|> as its last token when
  // `truncate`, and otherwise rejected with INVALID_ARGUMENT naming its token
  // count and the limit.
  std::vector<int32_t> tokenize(const std::string& text, int context_length = kContextLength,
                                bool truncate = true) const;

  // Row-major [texts.size(), context_length]; an error names the item index.
  std::vector<int32_t> tokenize_batch(const std::vector<std::string>& texts,
                                      int context_length = kContextLength,
                                      bool truncate = true) const;

  // The reference's decode: the tokens' bytes joined, invalid UTF-8 replaced
  // by U+FFFD, every "</w>" turned into a space (so a decoded text ends with
  // one). Unlike the reference, <|startoftext|> and <|endoftext|> are left
  // out, and so are the zeros after the last <|endoftext|> (padding). Throws
  // INVALID_ARGUMENT for an id outside the vocabulary.
  std::string decode(const std::vector<int32_t>& ids) const;

  // Where the model reads a tokenized row's features: the reference takes
  // argmax over the ids, which is the first <|endoftext|> (its id is the
  // largest). Throws INVALID_ARGUMENT for an empty row.
  static size_t eot_position(const int32_t* row, size_t length);
  static size_t eot_position(const std::vector<int32_t>& row) {
    return eot_position(row.data(), row.size());
  }

  // Vocabulary entry `id` as the reference spells it: its bytes mapped to
  // printable characters, "</w>" marking a word end (e.g. "photo</w>").
  const std::string& token(int32_t id) const;

 private:
  class Cache;

  void load_merges(const std::string& text, const std::string& path);
  void add_pair(int32_t left, int32_t right, int32_t rank);
  int32_t pair_rank(int32_t left, int32_t right) const;  // -1 when no merge

  void encode_cleaned(const std::u32string& text, std::vector<int32_t>& ids) const;
  void encode_piece(const std::string& piece, std::vector<int32_t>& ids) const;
  void merge_piece(std::string_view piece, std::vector<int32_t>& ids) const;
  void tokenize_into(const std::string& text, int context_length, bool truncate,
                     int32_t* row) const;

  std::vector<std::string> tokens_;       // id -> reference spelling (UTF-8)
  std::vector<std::string> token_bytes_;  // id -> the bytes it decodes to
  std::array<int32_t, 256> byte_token_{};  // byte -> id; +256 is its "</w>" form
  // Open-addressing table (left << 32 | right) -> merge rank; the merged
  // token's id is 512 + rank.
  std::vector<uint64_t> pair_keys_;
  std::vector<int32_t> pair_ranks_;
  uint64_t pair_mask_ = 0;
  std::unique_ptr<Cache> cache_;
};

}  // namespace refinery
