// See bpe_tokenizer.h. The reference is OpenAI CLIP's simple_tokenizer.py;
// comments name the Python each part reproduces.
#include "core/text/bpe_tokenizer.h"

#include <utf8proc.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <unordered_map>

#include "core/base/assets.h"
#include "core/base/error.h"
#include "core/text/text_cleaner.h"

namespace refinery {
namespace {

constexpr const char* kSotText = "<|startoftext|>";
constexpr const char* kEotText = "<|endoftext|>";
constexpr const char* kEndOfWord = "</w>";
// Vocabulary layout: 256 byte tokens, the same 256 with "</w>", the merges,
// then the two special tokens.
constexpr int32_t kFirstMergeId = 512;
constexpr size_t kMergeCount = BpeTokenizer::kSot - kFirstMergeId;  // 48,894

// ---------------------------------------------------------------------------
// Reading the merge list

std::string read_gzip_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw not_found("cannot open BPE vocabulary file " + path + ": " + std::strerror(errno));
  }
  const std::string compressed((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
  if (compressed.size() < 2 || static_cast<uint8_t>(compressed[0]) != 0x1F ||
      static_cast<uint8_t>(compressed[1]) != 0x8B) {
    throw invalid_argument("BPE vocabulary file " + path + " is not gzip-compressed");
  }
  z_stream stream{};
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) {  // 16: expect a gzip header
    throw internal_error("zlib could not start inflating " + path);
  }
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  std::string text;
  char chunk[1 << 16];
  int status = Z_OK;
  while (status == Z_OK) {
    stream.next_out = reinterpret_cast<Bytef*>(chunk);
    stream.avail_out = sizeof(chunk);
    status = inflate(&stream, Z_NO_FLUSH);
    text.append(chunk, sizeof(chunk) - stream.avail_out);
    if (status == Z_BUF_ERROR && stream.avail_in == 0) break;  // input ran out early
  }
  const std::string message = stream.msg != nullptr ? stream.msg : "unexpected end of data";
  inflateEnd(&stream);
  if (status != Z_STREAM_END) {
    throw invalid_argument("BPE vocabulary file " + path + " is damaged: " + message);
  }
  return text;
}

// The reference's bytes_to_unicode(): every byte gets a printable character,
// the printable Latin-1 bytes themselves and the rest U+0100 onwards, so that
// BPE never sees whitespace or control characters. Index k of the returned
// order is the id of that byte's token.
struct ByteAlphabet {
  std::array<uint8_t, 256> byte_of_index{};
  std::array<char32_t, 256> char_of_index{};
  std::unordered_map<char32_t, uint8_t> byte_of_char;
};

ByteAlphabet make_byte_alphabet() {
  ByteAlphabet alphabet;
  std::array<bool, 256> printable{};
  int index = 0;
  auto add = [&](int byte, char32_t c) {
    alphabet.byte_of_index[index] = static_cast<uint8_t>(byte);
    alphabet.char_of_index[index] = c;
    alphabet.byte_of_char[c] = static_cast<uint8_t>(byte);
    ++index;
  };
  for (int b = 0; b < 256; ++b) {
    printable[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (printable[b]) add(b, static_cast<char32_t>(b));
  }
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    if (!printable[b]) add(b, next++);
  }
  return alphabet;
}

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

// Python's line.split() for a merge line, which holds exactly two tokens.
bool split_merge_line(std::string_view line, std::string_view& left, std::string_view& right) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_ascii_space(line[i])) ++i;
    size_t end = i;
    while (end < line.size() && !is_ascii_space(line[end])) ++end;
    if (end > i) parts.push_back(line.substr(i, end - i));
    i = end;
  }
  if (parts.size() != 2) return false;
  left = parts[0];
  right = parts[1];
  return true;
}

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

uint64_t pair_hash(uint64_t key) {
  key ^= key >> 29;
  key *= 0x9E3779B97F4A7C15ULL;
  return key ^ (key >> 32);
}

constexpr uint64_t kEmptyKey = ~0ULL;

// ---------------------------------------------------------------------------
// The pre-split pattern, over code points:
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|
//   [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+         (regex module, IGNORECASE)

enum class CharClass : uint8_t { kSpace, kLetter, kNumber, kOther, kUnmatched };

CharClass classify(char32_t c) {
  if (c < 0x80) {
    if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return CharClass::kSpace;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CharClass::kLetter;
    if (c >= '0' && c <= '9') return CharClass::kNumber;
    return CharClass::kOther;
  }
  // U+0345 COMBINING GREEK YPOGEGRAMMENI is no letter, but under IGNORECASE
  // the regex module lets it match [\s\p{L}\p{N}] through its capital (Ι),
  // so the negated class refuses it too and no alternative takes it.
  if (c == 0x0345) return CharClass::kUnmatched;
  if (TextCleaner::is_space(c)) return CharClass::kSpace;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return CharClass::kLetter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return CharClass::kNumber;
    default:
      return CharClass::kOther;
  }
}

// `c` equals the lower-case ASCII letter `letter` under the pattern's
// IGNORECASE; U+017F LONG S is the only non-ASCII character that folds to a
// letter the pattern spells out.
bool matches_ignoring_case(char32_t c, char letter) {
  if (c == static_cast<char32_t>(letter)) return true;
  if (letter >= 'a' && letter <= 'z' && c == static_cast<char32_t>(letter - 'a' + 'A')) return true;
  return letter == 's' && c == 0x017F;
}

bool literal_at(const std::u32string& text, size_t at, std::string_view literal) {
  if (text.size() - at < literal.size()) return false;
  for (size_t k = 0; k < literal.size(); ++k) {
    if (!matches_ignoring_case(text[at + k], literal[k])) return false;
  }
  return true;
}

// Length of the contraction ('s, 't, 're, 've, 'm, 'll, 'd) at text[at], or 0.
size_t contraction_at(const std::u32string& text, size_t at) {
  for (std::string_view suffix : {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}) {
    if (literal_at(text, at, suffix)) return suffix.size();
  }
  return 0;
}

// ---------------------------------------------------------------------------
// BPE over one piece

struct Symbol {
  int32_t id;
  int32_t prev;  // index of the previous live symbol, -1 at the start
  int32_t next;  // index of the next live symbol, -1 at the end
};

struct Candidate {
  int32_t rank;
  int32_t left;  // index of the pair's left symbol
  // A min-heap on (rank, position): the lowest-ranked pair first and, for
  // equal ranks, the leftmost occurrence, as the reference merges them.
  bool operator<(const Candidate& other) const {
    return rank != other.rank ? rank > other.rank : left > other.left;
  }
};

}  // namespace

// ---------------------------------------------------------------------------
// The cache of BPE results, per piece. The reference keeps an unbounded dict;
// a server must not grow without bound, so a full shard starts over.

class BpeTokenizer::Cache {
 public:
  // Appends the cached ids of `piece` to `ids`; false when not cached.
  bool find(const std::string& piece, std::vector<int32_t>& ids) const {
    const Shard& shard = shard_for(piece);
    std::lock_guard<std::mutex> lock(shard.mutex);
    auto it = shard.entries.find(piece);
    if (it == shard.entries.end()) return false;
    ids.insert(ids.end(), it->second.begin(), it->second.end());
    return true;
  }

  void insert(const std::string& piece, const int32_t* begin, const int32_t* end) {
    if (piece.size() > kMaxPieceBytes) return;
    Shard& shard = shard_for(piece);
    std::lock_guard<std::mutex> lock(shard.mutex);
    if (shard.entries.size() >= kMaxEntriesPerShard) shard.entries.clear();
    shard.entries.emplace(piece, std::vector<int32_t>(begin, end));
  }

 private:
  static constexpr size_t kShards = 16;
  static constexpr size_t kMaxEntriesPerShard = 8192;
  static constexpr size_t kMaxPieceBytes = 64;  // longer pieces are rare: not worth keeping

  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>> entries;
  };

  Shard& shard_for(std::string_view piece) {
    return shards_[std::hash<std::string_view>()(piece) % kShards];
  }
  const Shard& shard_for(std::string_view piece) const {
    return shards_[std::hash<std::string_view>()(piece) % kShards];
  }

  std::array<Shard, kShards> shards_;
};

// ---------------------------------------------------------------------------
// Construction

BpeTokenizer::BpeTokenizer(const std::string& merges_gz_path) : cache_(std::make_unique<Cache>()) {
  load_merges(read_gzip_file(merges_gz_path), merges_gz_path);
}

BpeTokenizer::~BpeTokenizer() = default;

const BpeTokenizer& BpeTokenizer::default_instance() {
  static const BpeTokenizer instance(assets_dir() + "/bpe_simple_vocab_16e6.txt.gz");
  return instance;
}

// The reference: merges = lines[1:49152-256-2+1]; vocab = byte characters,
// the same with "</w>", the merges joined, then the two special tokens.
void BpeTokenizer::load_merges(const std::string& text, const std::string& path) {
  const ByteAlphabet alphabet = make_byte_alphabet();
  std::unordered_map<std::string, int32_t> ids;  // spelling -> id, while building
  ids.reserve(kVocabSize);
  tokens_.reserve(kVocabSize);
  auto add_token = [&](std::string spelling) {
    ids.emplace(spelling, static_cast<int32_t>(tokens_.size()));
    tokens_.push_back(std::move(spelling));
  };
  for (int k = 0; k < 256; ++k) {
    std::string spelling;
    append_utf8(alphabet.char_of_index[k], spelling);
    byte_token_[alphabet.byte_of_index[k]] = k;
    add_token(std::move(spelling));
  }
  for (int k = 0; k < 256; ++k) add_token(tokens_[k] + kEndOfWord);

  const size_t capacity = 1 << 17;  // a power of two, over twice the merge count
  pair_keys_.assign(capacity, kEmptyKey);
  pair_ranks_.assign(capacity, -1);
  pair_mask_ = capacity - 1;

  size_t line_start = text.find('\n');  // line 0 is the version header
  for (size_t rank = 0; rank < kMergeCount; ++rank) {
    if (line_start == std::string::npos || line_start + 1 >= text.size()) {
      throw invalid_argument("BPE vocabulary file " + path + " has " + std::to_string(rank) +
                             " merges; CLIP's has " + std::to_string(kMergeCount));
    }
    ++line_start;
    size_t line_end = text.find('\n', line_start);
    const std::string_view line(text.data() + line_start,
                                (line_end == std::string::npos ? text.size() : line_end) - line_start);
    line_start = line_end;
    const std::string where = "BPE vocabulary file " + path + ", line " + std::to_string(rank + 2);
    std::string_view left, right;
    if (!split_merge_line(line, left, right)) {
      throw invalid_argument(where + ": expected two tokens, found \"" + std::string(line) + "\"");
    }
    // Parts are earlier tokens; this also makes every merge's rank higher
    // than the ranks of the merges that made its parts, which merge_piece
    // relies on.
    auto left_id = ids.find(std::string(left));
    auto right_id = ids.find(std::string(right));
    if (left_id == ids.end() || right_id == ids.end()) {
      throw invalid_argument(where + ": merges a token that no earlier line made");
    }
    std::string merged = std::string(left) + std::string(right);
    if (ids.count(merged) != 0) {
      throw invalid_argument(where + ": token \"" + merged + "\" is made twice");
    }
    add_pair(left_id->second, right_id->second, static_cast<int32_t>(rank));
    add_token(std::move(merged));
  }
  add_token(kSotText);
  add_token(kEotText);

  // What each token decodes to: its characters mapped back to bytes.
  token_bytes_.reserve(tokens_.size());
  for (const std::string& spelling : tokens_) {
    std::string bytes;
    for (char32_t c : decode_utf8(spelling)) {
      auto it = alphabet.byte_of_char.find(c);
      if (it == alphabet.byte_of_char.end()) {
        throw invalid_argument("BPE vocabulary file " + path + ": token \"" + spelling +
                               "\" has a character outside the byte alphabet");
      }
      bytes.push_back(static_cast<char>(it->second));
    }
    token_bytes_.push_back(std::move(bytes));
  }
}

void BpeTokenizer::add_pair(int32_t left, int32_t right, int32_t rank) {
  const uint64_t key = pair_key(left, right);
  uint64_t slot = pair_hash(key) & pair_mask_;
  while (pair_keys_[slot] != kEmptyKey) slot = (slot + 1) & pair_mask_;
  pair_keys_[slot] = key;
  pair_ranks_[slot] = rank;
}

int32_t BpeTokenizer::pair_rank(int32_t left, int32_t right) const {
  const uint64_t key = pair_key(left, right);
  for (uint64_t slot = pair_hash(key) & pair_mask_;; slot = (slot + 1) & pair_mask_) {
    if (pair_keys_[slot] == key) return pair_ranks_[slot];
    if (pair_keys_[slot] == kEmptyKey) return -1;
  }
}

const std::string& BpeTokenizer::token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= tokens_.size()) {
    throw invalid_argument("token id " + std::to_string(id) + " is outside the vocabulary of " +
                           std::to_string(tokens_.size()));
  }
  return tokens_[static_cast<size_t>(id)];
}

// ---------------------------------------------------------------------------
// Encoding

// The reference's bpe(): start from the piece's bytes, the last marked as
// ending the word; repeatedly merge every occurrence, left to right, of the
// adjacent pair with the lowest rank. Done with a heap of candidate pairs so
// that long pieces cost O(n log n). It gives the reference's result because
// a merge creates only pairs of higher rank than its own (checked when
// loading), so ranks come off the heap in the order the reference picks them.
void BpeTokenizer::merge_piece(std::string_view piece, std::vector<int32_t>& ids) const {
  const auto n = static_cast<int32_t>(piece.size());
  auto byte_at = [&](int32_t i) { return static_cast<uint8_t>(piece[static_cast<size_t>(i)]); };
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  symbols.clear();
  heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    const int32_t id = byte_token_[byte_at(i)] + (i == n - 1 ? 256 : 0);
    symbols.push_back({id, i - 1, i + 1 < n ? i + 1 : -1});
  }
  auto consider = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    const int32_t rank = pair_rank(symbols[left].id, symbols[right].id);
    if (rank < 0) return;
    heap.push_back({rank, left});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate best = heap.back();
    heap.pop_back();
    Symbol& left = symbols[best.left];
    // Skip candidates that earlier merges made stale: the left symbol was
    // absorbed, or the pair there is no longer this one.
    if (left.id < 0 || left.next < 0) continue;
    if (pair_rank(left.id, symbols[left.next].id) != best.rank) continue;
    Symbol& right = symbols[left.next];
    left.id = kFirstMergeId + best.rank;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = best.left;
    right.id = -1;
    if (left.prev >= 0) consider(left.prev);
    consider(best.left);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

void BpeTokenizer::encode_piece(const std::string& piece, std::vector<int32_t>& ids) const {
  if (piece.size() == 1) {  // one byte: its "</w>" token, nothing to merge
    ids.push_back(byte_token_[static_cast<uint8_t>(piece[0])] + 256);
    return;
  }
  if (cache_->find(piece, ids)) return;
  const size_t start = ids.size();
  merge_piece(piece, ids);
  cache_->insert(piece, ids.data() + start, ids.data() + ids.size());
}

// re.findall(pattern, text), each piece encoded as it is found.
void BpeTokenizer::encode_cleaned(const std::u32string& text, std::vector<int32_t>& ids) const {
  std::string piece;
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const char32_t c = text[i];
    size_t end = i;
    if (c == '<' && (literal_at(text, i, kSotText) || literal_at(text, i, kEotText))) {
      end = i + (literal_at(text, i, kSotText) ? std::strlen(kSotText) : std::strlen(kEotText));
    } else if (c == '\'' && contraction_at(text, i) > 0) {
      end = i + contraction_at(text, i);
    } else {
      const CharClass cls = classify(c);
      if (cls == CharClass::kSpace || cls == CharClass::kUnmatched) {
        ++i;  // findall skips what the pattern cannot match
        continue;
      }
      end = i + 1;
      if (cls != CharClass::kNumber) {  // a number is one digit per piece
        while (end < n && classify(text[end]) == cls) ++end;
      }
    }
    piece.clear();
    for (size_t k = i; k < end; ++k) append_utf8(text[k], piece);
    // The reference maps the special tokens to their ids through its BPE
    // cache, which holds exactly these two spellings; any other match of
    // the special alternatives (e.g. with U+017F for 's') is BPE-encoded.
    if (piece == kSotText) {
      ids.push_back(kSot);
    } else if (piece == kEotText) {
      ids.push_back(kEot);
    } else {
      encode_piece(piece, ids);
    }
    i = end;
  }
}

std::vector<int32_t> BpeTokenizer::encode(const std::string& text) const {
  std::vector<int32_t> ids;
  encode_cleaned(TextCleaner::clean(text), ids);
  return ids;
}

// clip.tokenize for one text, into a zeroed row of `context_length`.
void BpeTokenizer::tokenize_into(const std::string& text, int context_length, bool truncate,
                                 int32_t* row) const {
  const std::vector<int32_t> ids = encode(text);
  const size_t length = static_cast<size_t>(context_length);
  const size_t total = ids.size() + 2;
  if (total > length && !truncate) {
    throw invalid_argument("text is too long for context length " +
                           std::to_string(context_length) + ": it has " + std::to_string(total) +
                           " tokens, counting <|startoftext|> and <|endoftext|>");
  }
  row[0] = kSot;
  const size_t body = std::min(ids.size(), length >= 2 ? length - 2 : 0);
  std::copy(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(body), row + 1);
  // When cut, <|endoftext|> replaces the last token that fits (the
  // reference's tokens[-1] = eot), even <|startoftext|> at length 1.
  row[std::min(body + 1, length - 1)] = kEot;
}

std::vector<int32_t> BpeTokenizer::tokenize(const std::string& text, int context_length,
                                            bool truncate) const {
  if (context_length < 1) {
    throw invalid_argument("context length must be positive, got " +
                           std::to_string(context_length));
  }
  std::vector<int32_t> row(static_cast<size_t>(context_length), 0);
  tokenize_into(text, context_length, truncate, row.data());
  return row;
}

std::vector<int32_t> BpeTokenizer::tokenize_batch(const std::vector<std::string>& texts,
                                                  int context_length, bool truncate) const {
  if (context_length < 1) {
    throw invalid_argument("context length must be positive, got " +
                           std::to_string(context_length));
  }
  const auto length = static_cast<size_t>(context_length);
  std::vector<int32_t> rows(texts.size() * length, 0);
  for (size_t i = 0; i < texts.size(); ++i) {
    try {
      tokenize_into(texts[i], context_length, truncate, rows.data() + i * length);
    } catch (const Error& e) {
      throw Error(e.code(), "item " + std::to_string(i) + ": " + e.what());
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------
// Decoding

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  size_t end = ids.size();
  const auto last_eot = std::find(ids.rbegin(), ids.rend(), kEot);
  if (last_eot != ids.rend() && std::all_of(ids.rbegin(), last_eot, [](int32_t id) { return id == 0; })) {
    end = static_cast<size_t>(ids.rend() - last_eot) - 1;
  }
  std::string bytes;
  for (size_t i = 0; i < end; ++i) {
    const int32_t id = ids[i];
    if (id < 0 || static_cast<size_t>(id) >= token_bytes_.size()) {
      throw invalid_argument("token id " + std::to_string(id) + " at position " +
                             std::to_string(i) + " is outside the vocabulary of " +
                             std::to_string(token_bytes_.size()));
    }
    if (id == kSot || id == kEot) continue;
    bytes += token_bytes_[static_cast<size_t>(id)];
  }
  // bytearray(...).decode('utf-8', errors='replace').replace('</w>', ' ')
  const std::string text = encode_utf8(decode_utf8(bytes));
  std::string out;
  out.reserve(text.size());
  const std::string_view marker = kEndOfWord;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, marker.size(), marker) == 0) {
      out.push_back(' ');
      i += marker.size();
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

size_t BpeTokenizer::eot_position(const int32_t* row, size_t length) {
  if (length == 0) throw invalid_argument("eot_position of an empty row");
  return static_cast<size_t>(std::max_element(row, row + length) - row);
}

}  // namespace refinery
