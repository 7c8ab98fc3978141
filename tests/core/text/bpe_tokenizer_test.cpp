#include "core/text/bpe_tokenizer.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/base/assets.h"
#include "core/base/error.h"
#include "core/safetensors/safetensors.h"
#include "support/fixture.h"
#include "support/errors.h"

namespace refinery {
namespace {

using testing::TempDir;

constexpr size_t kCtx = BpeTokenizer::kContextLength;

std::vector<std::string> fixture_texts() {
  std::ifstream in(testing::fixture("texts.json"));
  return nlohmann::json::parse(in).get<std::vector<std::string>>();
}

std::vector<int32_t> reference_tokens() {
  return SafetensorsFile::open(testing::fixture("reference.safetensors")).at("tokens").to_int32s();
}

std::string row_string(const int32_t* row, size_t n) {
  std::ostringstream s;
  for (size_t i = 0; i < n; ++i) s << (i ? " " : "") << row[i];
  return s.str();
}

std::vector<int32_t> concat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// The error a callable throws, or a failure when it throws none.
using testing::error_of;

const BpeTokenizer& tok() { return BpeTokenizer::default_instance(); }

TEST(BpeTokenizer, MatchesTheReferenceOnEveryFixtureText) {
  const auto texts = fixture_texts();
  const auto ref = reference_tokens();
  ASSERT_EQ(texts.size(), 200u);
  ASSERT_EQ(ref.size(), texts.size() * kCtx);
  size_t mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto row = tok().tokenize(texts[i]);
    ASSERT_EQ(row.size(), kCtx);
    if (!std::equal(row.begin(), row.end(), ref.begin() + static_cast<std::ptrdiff_t>(i * kCtx))) {
      ++mismatches;
      ADD_FAILURE() << "text " << i << ": \"" << texts[i] << "\"\n  ours:      "
                    << row_string(row.data(), kCtx) << "\n  reference: "
                    << row_string(ref.data() + i * kCtx, kCtx);
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

TEST(BpeTokenizer, BatchEqualsTheReferenceTensor) {
  EXPECT_EQ(tok().tokenize_batch(fixture_texts()), reference_tokens());
}

TEST(BpeTokenizer, HasClipsVocabulary) {
  EXPECT_EQ(tok().vocab_size(), 49408u);
  EXPECT_EQ(tok().token(BpeTokenizer::kSot), "<|startoftext|>");
  EXPECT_EQ(tok().token(BpeTokenizer::kEot), "<|endoftext|>");
  // Printable bytes stand for themselves, first '!'; the others follow from
  // U+0100 on, the space (the 33rd of them) as U+0120.
  EXPECT_EQ(tok().token(0), "!");
  EXPECT_EQ(tok().token(256), "!</w>");
  EXPECT_EQ(tok().token(188 + 32), "\u0120");
  EXPECT_THROW(tok().token(49408), Error);
}

TEST(BpeTokenizer, CommonWordsAreSingleTokens) {
  const auto ids = tok().encode("A photo of a CAT.");
  std::vector<std::string> tokens;
  for (int32_t id : ids) tokens.push_back(tok().token(id));
  EXPECT_EQ(tokens, (std::vector<std::string>{"a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>", ".</w>"}));
}

TEST(BpeTokenizer, SplitsAsTheReferencePattern) {
  // Letters run together, each digit is a piece of its own.
  EXPECT_EQ(tok().encode("abc123"),
            concat({tok().encode("abc"), tok().encode("1"), tok().encode("2"), tok().encode("3")}));
  // Contractions split off; punctuation runs are one piece.
  EXPECT_EQ(tok().encode("don't"), concat({tok().encode("don"), tok().encode("'t")}));
  EXPECT_EQ(tok().encode("hello!?!world"), tok().encode("hello !?! world"));
  // Special tokens written in the text become the special ids...
  EXPECT_EQ(tok().encode("<|endoftext|>"), std::vector<int32_t>{BpeTokenizer::kEot});
  EXPECT_EQ(tok().encode("a<|startoftext|>"), concat({tok().encode("a"), {BpeTokenizer::kSot}}));
  // ...but not inside a run of punctuation, where the pattern never sees them.
  const auto glued = tok().encode("!<|endoftext|>");
  EXPECT_EQ(std::count(glued.begin(), glued.end(), BpeTokenizer::kEot), 0);
}

TEST(BpeTokenizer, PadsWithZerosAfterEndOfText) {
  const auto row = tok().tokenize("a cat");
  const auto ids = tok().encode("a cat");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(row[0], BpeTokenizer::kSot);
  EXPECT_EQ(row[1], ids[0]);
  EXPECT_EQ(row[2], ids[1]);
  EXPECT_EQ(row[3], BpeTokenizer::kEot);
  EXPECT_TRUE(std::all_of(row.begin() + 4, row.end(), [](int32_t id) { return id == 0; }));
  EXPECT_EQ(BpeTokenizer::eot_position(row), 3u);
  EXPECT_EQ(tok().tokenize(""), concat({{BpeTokenizer::kSot, BpeTokenizer::kEot}, std::vector<int32_t>(75, 0)}));
}

std::string words(int n) {
  std::string text;
  for (int i = 0; i < n; ++i) text += "word ";
  return text;
}

TEST(BpeTokenizer, TruncatesWithEndOfTextLast) {
  const auto ids = tok().encode(words(100));
  ASSERT_EQ(ids.size(), 100u);  // "word" is one token
  const auto row = tok().tokenize(words(100));
  ASSERT_EQ(row.size(), kCtx);
  EXPECT_EQ(row.front(), BpeTokenizer::kSot);
  EXPECT_EQ(row.back(), BpeTokenizer::kEot);
  EXPECT_TRUE(std::equal(row.begin() + 1, row.end() - 1, ids.begin()));
  EXPECT_EQ(BpeTokenizer::eot_position(row), kCtx - 1);
  // Exactly full is not cut.
  const auto full = tok().tokenize(words(75), kCtx, false);
  EXPECT_EQ(full[75], ids[74]);
  EXPECT_EQ(full[76], BpeTokenizer::kEot);
}

TEST(BpeTokenizer, RejectsOverlongTextWhenNotTruncating) {
  const Error e = error_of([] { tok().tokenize(words(100), kCtx, false); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find("102 tokens"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("77"), std::string::npos) << e.what();
}

TEST(BpeTokenizer, BatchErrorsNameTheItem) {
  const Error e = error_of([] { tok().tokenize_batch({"a cat", "a dog", words(80)}, kCtx, false); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find("item 2"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("82 tokens"), std::string::npos) << e.what();
}

TEST(BpeTokenizer, HonoursOtherContextLengths) {
  const auto ids = tok().encode("a photo of a cat");
  EXPECT_EQ(tok().tokenize("a photo of a cat", 4), (std::vector<int32_t>{BpeTokenizer::kSot, ids[0], ids[1], BpeTokenizer::kEot}));
  EXPECT_EQ(tok().tokenize("a photo of a cat", 1), std::vector<int32_t>{BpeTokenizer::kEot});
  const auto batch = tok().tokenize_batch({"a", "a photo of a cat"}, 3);
  EXPECT_EQ(batch, (std::vector<int32_t>{BpeTokenizer::kSot, ids[0], BpeTokenizer::kEot,
                                         BpeTokenizer::kSot, ids[0], BpeTokenizer::kEot}));
  EXPECT_THROW(tok().tokenize("a", 0), Error);
}

TEST(BpeTokenizer, DecodeRoundTripsOrdinaryText) {
  // As the reference, every word end becomes a space, the last one too (so
  // "park." would come back as "park . ": punctuation is a word of its own).
  for (const std::string text : {"a photo of a cat", "two dogs playing with a frisbee in a grassy park",
                                 "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e", "\u6771\u4eac\u306e\u591c\u666f",
                                 "emoji \U0001f436\U0001f431 done", "supercalifragilisticexpialidocious"}) {
    EXPECT_EQ(tok().decode(tok().encode(text)), text + " ");
    // The special tokens and the padding are left out.
    EXPECT_EQ(tok().decode(tok().tokenize(text)), text + " ");
  }
  // A long word goes through many merges and still spells the same bytes.
  std::string long_word;
  for (int i = 0; i < 500; ++i) long_word += "abcdefghijklmnopqrstuvwxyz"[(i * 7 + i / 3) % 26];
  EXPECT_EQ(tok().decode(tok().encode(long_word)), long_word + " ");
}

TEST(BpeTokenizer, DecodeKeepsZerosThatAreNotPadding) {
  // Id 0 is "!": only zeros after the final <|endoftext|> are padding.
  EXPECT_EQ(tok().decode({0, 256}), "!! ");
  EXPECT_EQ(tok().decode({BpeTokenizer::kSot, 0, 256, BpeTokenizer::kEot, 0, 0}), "!! ");
}

TEST(BpeTokenizer, DecodeReplacesBrokenUtf8AndRejectsUnknownIds) {
  // "\u00e6" as a token stands for the single byte 0xE6, a UTF-8 lead byte
  // with nothing after it.
  int32_t lone_lead_byte = -1;
  for (int32_t id = 0; id < 256; ++id) {
    if (tok().token(id) == "\u00e6") lone_lead_byte = id;
  }
  ASSERT_GE(lone_lead_byte, 0);
  EXPECT_EQ(tok().decode({lone_lead_byte}), "\ufffd");
  const Error e = error_of([] { tok().decode({1, 49408}); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find("49408"), std::string::npos) << e.what();
  EXPECT_THROW(tok().decode({-1}), Error);
}

TEST(BpeTokenizer, ConcurrentUseGivesTheSerialResults) {
  // A fresh tokenizer, so the threads race on an empty cache.
  const BpeTokenizer fresh(assets_dir() + "/bpe_simple_vocab_16e6.txt.gz");
  const auto texts = fixture_texts();
  const auto ref = reference_tokens();
  constexpr int kThreads = 6;
  std::vector<std::vector<int32_t>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread walks the texts from a different start, three times.
      std::vector<int32_t> out(texts.size() * kCtx);
      for (int round = 0; round < 3; ++round) {
        for (size_t k = 0; k < texts.size(); ++k) {
          const size_t i = (k + static_cast<size_t>(t) * 37) % texts.size();
          const auto row = fresh.tokenize(texts[i]);
          std::copy(row.begin(), row.end(), out.begin() + static_cast<std::ptrdiff_t>(i * kCtx));
        }
      }
      results[static_cast<size_t>(t)] = std::move(out);
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(results[static_cast<size_t>(t)], ref) << "thread " << t;
}

TEST(BpeTokenizer, MissingVocabularyNamesThePath) {
  const std::string path = "/nonexistent/refinery/bpe_simple_vocab_16e6.txt.gz";
  const Error e = error_of([&] { BpeTokenizer t(path); });
  EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
}

void write_gzip(const std::string& path, const std::string& text) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
  gzclose(f);
}

TEST(BpeTokenizer, DamagedVocabularyNamesThePath) {
  TempDir dir;
  auto expect_invalid = [](const std::string& path, const std::string& detail) {
    const Error e = error_of([&] { BpeTokenizer t(path); });
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(detail), std::string::npos) << e.what();
  };
  testing::write_file(dir / "plain.txt", "#version: 0.2\ni n\n");
  expect_invalid(dir / "plain.txt", "not gzip");

  const std::string real = testing::read_file(assets_dir() + "/bpe_simple_vocab_16e6.txt.gz");
  testing::write_file(dir / "cut.gz", real.substr(0, real.size() / 2));
  expect_invalid(dir / "cut.gz", "damaged");

  write_gzip(dir / "short.gz", "#version: 0.2\ni n\nt h\n");
  expect_invalid(dir / "short.gz", "has 2 merges");

  write_gzip(dir / "bad_line.gz", "#version: 0.2\ni n\nthree tokens here\n");
  expect_invalid(dir / "bad_line.gz", "line 3");
}

TEST(BpeTokenizer, DefaultInstanceIsLoadedOnce) {
  EXPECT_EQ(&BpeTokenizer::default_instance(), &BpeTokenizer::default_instance());
}

}  // namespace
}  // namespace refinery
