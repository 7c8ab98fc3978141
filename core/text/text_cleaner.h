// What OpenAI CLIP's reference tokenizer (simple_tokenizer.py) does to a text
// before byte-pair encoding:
//
//   text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
//   text = re.sub(r'\s+', ' ', text).strip()
//   text = text.lower()
//
// reproduced code point for code point, because a single differing character
// changes the token ids the model sees. Unicode properties, normalisation and
// case mappings come from utf8proc; the tables the rules need are built once.
//
// ftfy.fix_text is reproduced as ftfy 6 behaves with its default settings,
// except for mojibake repair (`fix_encoding`), which is not implemented: it
// only changes text that already decoded wrongly somewhere upstream.
#pragma once

#include <string>
#include <string_view>

namespace refinery {

// UTF-8 <-> code points. Decoding replaces each maximal ill-formed
// subsequence with U+FFFD, as Python's `bytes.decode('utf-8', 'replace')`.
std::u32string decode_utf8(std::string_view bytes);
std::string encode_utf8(std::u32string_view text);
void append_utf8(char32_t c, std::string& out);

class TextCleaner {
 public:
  // The whole pipeline above. The tokenizer consumes the code-point form.
  static std::u32string clean(std::string_view utf8);
  static std::string clean_utf8(std::string_view utf8);

  // The steps, public so that each rule can be checked on its own.

  // ftfy.fix_text: per line, until nothing changes: HTML entities (unless the
  // text so far contained '<'), C1 controls read as Windows-1252, Latin
  // ligatures split, full-/half-width forms narrowed, curly quotes
  // straightened, line breaks made '\n', terminal escapes and control
  // characters removed, then NFC.
  static std::u32string fix_text(std::u32string_view text);
  // Python's html.unescape: named (HTML5 table, including the legacy names
  // that need no ';'), decimal and hexadecimal references.
  static std::u32string html_unescape(std::u32string_view text);
  // Python's str.strip() around re.sub(r'\s+', ' ', ...).
  static std::u32string collapse_whitespace(std::u32string_view text);
  // Python's str.lower(): full lower-casing, with final sigma.
  static std::u32string lower(std::u32string_view text);
  // Python's str.isspace() for one code point.
  static bool is_space(char32_t c);
};

}  // namespace refinery
