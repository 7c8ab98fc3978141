// See text_cleaner.h. Each rule names the Python it reproduces; where a detail
// looks arbitrary, it is because the reference does it that way.
#include "core/text/text_cleaner.h"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <unordered_map>

#include "core/base/error.h"
#include "core/text/html_entities.h"

namespace refinery {
namespace {

constexpr char32_t kReplacementChar = 0xFFFD;

// ftfy fixes a text one line at a time, and cuts longer lines at this many
// code points.
constexpr size_t kFtfyMaxSegment = 1000000;
// ftfy repeats its fixes until the text stops changing; this bounds the loop
// should some input ever oscillate (none is known to).
constexpr int kFtfyMaxRounds = 16;


bool is_ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }
bool is_ascii_alpha(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_ascii_alnum(char32_t c) { return is_ascii_digit(c) || is_ascii_alpha(c); }
bool is_ascii_hex(char32_t c) {
  return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
uint32_t hex_value(char32_t c) {
  return is_ascii_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
}

utf8proc_category_t category_of(char32_t c) {
  return utf8proc_category(static_cast<utf8proc_int32_t>(c));
}

// Windows-1252 for bytes 0x80-0x9F, the five undefined bytes kept as the C1
// control of the same number ("sloppy" windows-1252). ftfy's fix_c1_controls
// and html.unescape's table of invalid references both use it.
constexpr std::array<char32_t, 32> kCp1252High = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
    0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

// ---------------------------------------------------------------------------
// Python's html.unescape

using EntityMap = std::unordered_map<std::string, std::u32string>;

// Parses html5_entity_data(): "name=HEX[,HEX]" entries separated by spaces.
EntityMap parse_html5_entities() {
  EntityMap map;
  map.reserve(2300);
  const char* p = html5_entity_data();
  while (*p != '\0') {
    const char* name_end = p;
    while (*name_end != '=') ++name_end;
    std::string name(p, name_end);
    std::u32string value;
    p = name_end;
    while (*p == '=' || *p == ',') {
      char* end = nullptr;
      value.push_back(static_cast<char32_t>(std::strtoul(p + 1, &end, 16)));
      p = end;
    }
    map.emplace(std::move(name), std::move(value));
    while (*p == ' ') ++p;
  }
  return map;
}

// Keys are names as html.unescape sees them: "amp;" and the legacy "amp".
const EntityMap& html5_entities() {
  static const EntityMap map = parse_html5_entities();
  return map;
}

// html.unescape's rules for &#NNN; (its _invalid_charrefs and
// _invalid_codepoints). `num` saturates above the Unicode range.
std::u32string numeric_reference(uint32_t num) {
  if (num == 0x00) return std::u32string(1, kReplacementChar);
  if (num == 0x0D) return U"\r";
  if (num >= 0x80 && num <= 0x9F) return std::u32string(1, kCp1252High[num - 0x80]);
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
    return std::u32string(1, kReplacementChar);
  }
  const bool invalid = (num >= 0x01 && num <= 0x08) || num == 0x0B ||
                       (num >= 0x0E && num <= 0x1F) || (num >= 0x7F && num <= 0x9F) ||
                       (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE;
  if (invalid) return U"";
  return std::u32string(1, static_cast<char32_t>(num));
}

// The name part of html.unescape's pattern: [^\t\n\f <&#;]{1,32};?
bool is_entity_name_char(char32_t c) {
  return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' && c != '&' &&
         c != '#' && c != ';';
}

// A named reference `name` (as matched, maybe ending in ';'): the whole name,
// else its longest known prefix of at least two characters (so "&ampx"
// reads as "&x"), else left as it was.
std::u32string named_reference(std::u32string_view name) {
  const EntityMap& entities = html5_entities();
  // Entity names are ASCII; a prefix reaching a non-ASCII character cannot
  // be one.
  size_t ascii_len = 0;
  while (ascii_len < name.size() && name[ascii_len] < 0x80) ++ascii_len;
  std::string key(name.begin(), name.begin() + static_cast<std::ptrdiff_t>(ascii_len));
  if (ascii_len == name.size()) {
    auto it = entities.find(key);
    if (it != entities.end()) return it->second;
  }
  for (size_t len = std::min(name.size() - 1, ascii_len); len >= 2; --len) {
    auto it = entities.find(key.substr(0, len));
    if (it != entities.end()) {
      std::u32string out = it->second;
      out.append(name.substr(len));
      return out;
    }
  }
  std::u32string out = U"&";
  out.append(name);
  return out;
}

// Tries html.unescape's pattern at text[at] == '&'. On a match, appends the
// replacement and returns the index after the match; otherwise returns `at`.
size_t unescape_one(std::u32string_view text, size_t at, std::u32string& out) {
  const size_t n = text.size();
  size_t i = at + 1;
  if (i < n && text[i] == '#') {
    // &#[0-9]+;?  or  &#[xX][0-9a-fA-F]+;?
    size_t digits = i + 1;
    uint32_t base = 10;
    if (digits < n && (text[digits] == 'x' || text[digits] == 'X')) {
      base = 16;
      ++digits;
    }
    auto is_digit = [base](char32_t c) { return base == 16 ? is_ascii_hex(c) : is_ascii_digit(c); };
    if (digits >= n || !is_digit(text[digits])) return at;
    uint32_t num = 0;
    size_t end = digits;
    for (; end < n && is_digit(text[end]); ++end) {
      num = std::min<uint32_t>(num * base + hex_value(text[end]), 0x110000);
    }
    if (end < n && text[end] == ';') ++end;
    out += numeric_reference(num);
    return end;
  }
  size_t end = i;
  while (end < n && end - i < 32 && is_entity_name_char(text[end])) ++end;
  if (end == i) return at;
  if (end < n && text[end] == ';') ++end;
  out += named_reference(text.substr(i, end - i));
  return end;
}

std::u32string python_html_unescape(std::u32string_view text) {
  if (text.find('&') == std::u32string_view::npos) return std::u32string(text);
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '&') {
      const size_t next = unescape_one(text, i, out);
      if (next != i) {
        i = next;
        continue;
      }
    }
    out.push_back(text[i++]);
  }
  return out;
}

// ---------------------------------------------------------------------------
// ftfy's own unescape_html

// Python's str.upper() for the characters that occur in entity values: the
// simple mapping, plus the few whose upper case is longer (SpecialCasing).
std::u32string upper_entity_value(const std::u32string& value) {
  std::u32string out;
  for (char32_t c : value) {
    switch (c) {
      case 0x00DF: out += U"SS"; break;
      case 0x0149: out += U"\u02BCN"; break;
      case 0xFB00: out += U"FF"; break;
      case 0xFB01: out += U"FI"; break;
      case 0xFB02: out += U"FL"; break;
      case 0xFB03: out += U"FFI"; break;
      case 0xFB04: out += U"FFL"; break;
      default: out.push_back(static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c))));
    }
  }
  return out;
}

// ftfy also decodes all-caps spellings of lower-case entities ("&EACUTE;" is
// "É"), when the all-caps name means nothing to html.unescape.
EntityMap build_uppercase_entities() {
  EntityMap map;
  for (const auto& [name, value] : html5_entities()) {
    if (name.back() != ';') continue;
    bool lower_case = true;
    for (char c : name) lower_case = lower_case && !(c >= 'A' && c <= 'Z');
    if (!lower_case) continue;
    std::string upper = name;
    for (char& c : upper) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    const std::u32string entity = U"&" + std::u32string(upper.begin(), upper.end());
    if (python_html_unescape(entity) == entity) {
      map.emplace(std::move(upper), upper_entity_value(value));
    }
  }
  return map;
}

const EntityMap& uppercase_entities() {
  static const EntityMap map = build_uppercase_entities();
  return map;
}

// ftfy.fixes.unescape_html: only complete references &#?[0-9A-Za-z]{1,24};
// are decoded, and a numeric one only when html.unescape consumes all of it.
std::u32string ftfy_unescape_html(std::u32string_view text) {
  if (text.find('&') == std::u32string_view::npos) return std::u32string(text);
  std::u32string out;
  out.reserve(text.size());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    if (text[i] != '&') {
      out.push_back(text[i++]);
      continue;
    }
    const size_t body = (i + 1 < n && text[i + 1] == '#') ? i + 2 : i + 1;
    size_t end = body;
    while (end < n && end - body < 24 && is_ascii_alnum(text[end])) ++end;
    if (end == body || end >= n || text[end] != ';') {
      out.push_back(text[i++]);
      continue;
    }
    const std::u32string_view match = text.substr(i, end + 1 - i);
    const std::string name(match.begin() + 1, match.end());  // "amp;", ASCII
    const EntityMap& entities = html5_entities();
    const EntityMap& upper = uppercase_entities();
    if (auto it = entities.find(name); it != entities.end()) {
      out += it->second;
    } else if (auto up = upper.find(name); up != upper.end()) {
      out += up->second;
    } else if (match[1] == '#') {
      const std::u32string decoded = python_html_unescape(match);
      if (decoded.find(';') == std::u32string::npos) {
        out += decoded;
      } else {
        out += match;
      }
    } else {
      out += match;
    }
    i = end + 1;
  }
  return out;
}

// ---------------------------------------------------------------------------
// ftfy's character fixes

// Applies `map(c, out)` to every code point; `map` appends the replacement
// and returns true, or returns false to keep `c`.
template <typename Map>
std::u32string translate(std::u32string_view text, Map map) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (!map(c, out)) out.push_back(c);
  }
  return out;
}

// fix_c1_controls: C1 controls are almost always Windows-1252 bytes that
// were decoded as Latin-1.
bool map_c1_control(char32_t c, std::u32string& out) {
  if (c < 0x80 || c > 0x9F) return false;
  out.push_back(kCp1252High[c - 0x80]);
  return true;
}

// fix_latin_ligatures: typographic ligatures and legacy digraphs.
bool map_latin_ligature(char32_t c, std::u32string& out) {
  const char32_t* letters = nullptr;
  switch (c) {
    case 0x0132: letters = U"IJ"; break;
    case 0x0133: letters = U"ij"; break;
    case 0x0149: letters = U"\u02BCn"; break;
    case 0x01C4: letters = U"D\u017D"; break;
    case 0x01C5: letters = U"D\u017E"; break;
    case 0x01C6: letters = U"d\u017E"; break;
    case 0x01C7: letters = U"LJ"; break;
    case 0x01C8: letters = U"Lj"; break;
    case 0x01C9: letters = U"lj"; break;
    case 0x01CA: letters = U"NJ"; break;
    case 0x01CB: letters = U"Nj"; break;
    case 0x01CC: letters = U"nj"; break;
    case 0x01F1: letters = U"DZ"; break;
    case 0x01F2: letters = U"Dz"; break;
    case 0x01F3: letters = U"dz"; break;
    case 0xFB00: letters = U"ff"; break;
    case 0xFB01: letters = U"fi"; break;
    case 0xFB02: letters = U"fl"; break;
    case 0xFB03: letters = U"ffi"; break;
    case 0xFB04: letters = U"ffl"; break;
    case 0xFB05: letters = U"\u017Ft"; break;
    case 0xFB06: letters = U"st"; break;
    default: return false;
  }
  out += letters;
  return true;
}

// fix_character_width: U+FF01..U+FFEF replaced by their NFKC form where that
// differs, and U+3000 IDEOGRAPHIC SPACE by a space.
constexpr char32_t kWidthFirst = 0xFF01;
constexpr char32_t kWidthLast = 0xFFEF;

std::array<std::u32string, kWidthLast - kWidthFirst + 1> build_width_map() {
  std::array<std::u32string, kWidthLast - kWidthFirst + 1> map;
  for (char32_t c = kWidthFirst; c <= kWidthLast; ++c) {
    std::string utf8;
    append_utf8(c, utf8);
    utf8proc_uint8_t* nfkc = utf8proc_NFKC(reinterpret_cast<const utf8proc_uint8_t*>(utf8.c_str()));
    if (nfkc == nullptr) continue;
    std::u32string normal = decode_utf8(reinterpret_cast<const char*>(nfkc));
    std::free(nfkc);
    if (normal != std::u32string(1, c)) map[c - kWidthFirst] = std::move(normal);
  }
  return map;
}

bool map_character_width(char32_t c, std::u32string& out) {
  if (c == 0x3000) {
    out.push_back(' ');
    return true;
  }
  if (c < kWidthFirst || c > kWidthLast) return false;
  static const auto map = build_width_map();
  const std::u32string& narrow = map[c - kWidthFirst];
  if (narrow.empty()) return false;
  out += narrow;
  return true;
}

// uncurl_quotes
bool map_curly_quote(char32_t c, std::u32string& out) {
  if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) {
    out.push_back('\'');
    return true;
  }
  if (c >= 0x201C && c <= 0x201F) {
    out.push_back('"');
    return true;
  }
  return false;
}

// fix_line_breaks: CRLF, CR, U+2028, U+2029 and U+0085 all become LF.
std::u32string fix_line_breaks(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t c = text[i];
    if (c == '\r') {
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
      out.push_back('\n');
    } else if (c == 0x2028 || c == 0x2029 || c == 0x0085) {
      out.push_back('\n');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// remove_terminal_escapes: ESC '[' (\d|;)* [a-zA-Z], where Python's \d is any
// decimal digit (category Nd).
std::u32string remove_terminal_escapes(std::u32string_view text) {
  if (text.find(0x1B) == std::u32string_view::npos) return std::u32string(text);
  std::u32string out;
  out.reserve(text.size());
  const size_t n = text.size();
  for (size_t i = 0; i < n; ++i) {
    if (text[i] == 0x1B && i + 1 < n && text[i + 1] == '[') {
      size_t end = i + 2;
      while (end < n && (text[end] == ';' || category_of(text[end]) == UTF8PROC_CATEGORY_ND)) ++end;
      if (end < n && is_ascii_alpha(text[end])) {
        i = end;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

// remove_control_chars: controls with no visible effect (tab, LF, FF and CR
// stay), deprecated format characters, the BOM and interlinear annotation.
bool is_removable_control(char32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
         (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

std::u32string remove_control_chars(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (!is_removable_control(c)) out.push_back(c);
  }
  return out;
}

std::u32string nfc(std::u32string_view text) {
  // Below U+0300 every character is already in NFC and nothing combines.
  bool simple = true;
  for (char32_t c : text) simple = simple && c < 0x300;
  if (simple) return std::u32string(text);
  const std::string utf8 = encode_utf8(text);
  utf8proc_uint8_t* composed = nullptr;
  const utf8proc_ssize_t len =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(utf8.data()),
                   static_cast<utf8proc_ssize_t>(utf8.size()), &composed,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (len < 0) {
    throw internal_error(std::string("NFC normalisation failed: ") + utf8proc_errmsg(len));
  }
  std::u32string out = decode_utf8(std::string_view(reinterpret_cast<const char*>(composed),
                                                    static_cast<size_t>(len)));
  std::free(composed);
  return out;
}

// True when no ftfy fix can change `text`: printable ASCII, tab, LF and FF,
// and no '&' where entities would be decoded. Most captions are like this.
bool ftfy_leaves_alone(std::u32string_view text, bool unescape_html) {
  for (char32_t c : text) {
    const bool plain = (c >= 0x20 && c < 0x7F) || c == '\t' || c == '\n' || c == '\f';
    if (!plain || (unescape_html && c == '&')) return false;
  }
  return true;
}

// ftfy.fix_and_explain on one segment, in ftfy's order.
std::u32string fix_segment(std::u32string_view segment, bool unescape_html) {
  std::u32string text(segment);
  if (ftfy_leaves_alone(text, unescape_html)) return text;
  for (int round = 0; round < kFtfyMaxRounds; ++round) {
    const std::u32string before = text;
    if (unescape_html) text = ftfy_unescape_html(text);
    text = translate(text, map_c1_control);
    text = translate(text, map_latin_ligature);
    text = translate(text, map_character_width);
    text = translate(text, map_curly_quote);
    text = fix_line_breaks(text);
    text = remove_terminal_escapes(text);
    text = remove_control_chars(text);
    text = nfc(text);
    if (text == before) break;
  }
  return text;
}

// ---------------------------------------------------------------------------
// Python's str.lower()

// Unicode's Case_Ignorable: Mn, Me, Cf, Lm, Sk and the word-internal
// punctuation of Word_Break MidLetter, MidNumLet and Single_Quote.
bool is_case_ignorable(char32_t c) {
  switch (category_of(c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
      return true;
    default:
      break;
  }
  switch (c) {
    case 0x0027: case 0x002E: case 0x003A: case 0x00B7: case 0x0387: case 0x055F:
    case 0x05F4: case 0x2018: case 0x2019: case 0x2024: case 0x2027: case 0xFE13:
    case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
      return true;
    default:
      return false;
  }
}

// Unicode's Cased, which utf8proc lacks: a cased letter, anything with a case
// mapping (Roman numerals, circled letters), and the Other_Lowercase /
// Other_Uppercase characters without one. (Cased characters that are also
// case-ignorable, like U+02B0, are skipped before this is asked.)
bool is_cased(char32_t c) {
  const utf8proc_category_t cat = category_of(c);
  if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT) {
    return true;
  }
  const auto cp = static_cast<utf8proc_int32_t>(c);
  if (utf8proc_tolower(cp) != cp || utf8proc_toupper(cp) != cp) return true;
  return c == 0x00AA || c == 0x00BA || (c >= 0x1F130 && c <= 0x1F149) ||
         (c >= 0x1F150 && c <= 0x1F169) || (c >= 0x1F170 && c <= 0x1F189);
}

// CPython's handle_capital_sigma: U+03A3 lowers to final sigma when a cased
// letter precedes it and none follows (skipping case-ignorable characters).
bool is_final_sigma(std::u32string_view text, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(text[j - 1])) --j;
  if (j == 0 || !is_cased(text[j - 1])) return false;
  size_t k = i + 1;
  while (k < text.size() && is_case_ignorable(text[k])) ++k;
  return k == text.size() || !is_cased(text[k]);
}

}  // namespace

// ---------------------------------------------------------------------------
// UTF-8

std::u32string decode_utf8(std::string_view bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const auto lead = static_cast<uint8_t>(bytes[i]);
    if (lead < 0x80) {
      out.push_back(lead);
      ++i;
      continue;
    }
    // The valid range of the second byte depends on the lead byte; this is
    // what rejects overlong forms, surrogates and values above U+10FFFF.
    int length = 0;
    char32_t cp = 0;
    uint8_t second_lo = 0x80, second_hi = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
      cp = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      cp = lead & 0x0F;
      if (lead == 0xE0) second_lo = 0xA0;
      if (lead == 0xED) second_hi = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      cp = lead & 0x07;
      if (lead == 0xF0) second_lo = 0x90;
      if (lead == 0xF4) second_hi = 0x8F;
    } else {
      out.push_back(kReplacementChar);
      ++i;
      continue;
    }
    size_t j = i + 1;
    int have = 1;
    for (; have < length && j < n; ++have, ++j) {
      const auto b = static_cast<uint8_t>(bytes[j]);
      const uint8_t lo = have == 1 ? second_lo : 0x80;
      const uint8_t hi = have == 1 ? second_hi : 0xBF;
      if (b < lo || b > hi) break;
      cp = (cp << 6) | (b & 0x3F);
    }
    // A truncated or broken sequence is one U+FFFD covering the bytes that
    // were still plausible (the "maximal subpart").
    out.push_back(have == length ? cp : kReplacementChar);
    i = j;
  }
  return out;
}

void append_utf8(char32_t c, std::string& out) {
  if (c >= 0xD800 && (c <= 0xDFFF || c > 0x10FFFF) ) c = kReplacementChar;
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) append_utf8(c, out);
  return out;
}

// ---------------------------------------------------------------------------
// TextCleaner

bool TextCleaner::is_space(char32_t c) {
  // CPython's str.isspace(): bidirectional class WS, B or S, or category Zs.
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(c));
  return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
         p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

std::u32string TextCleaner::fix_text(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  // unescape_html="auto": once a line contains '<' the text is probably
  // HTML, and entities are left alone from that line on.
  bool unescape_html = true;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t newline = text.find('\n', pos);
    size_t end = newline == std::u32string_view::npos ? text.size() : newline + 1;
    if (end - pos > kFtfyMaxSegment) end = pos + kFtfyMaxSegment;
    const std::u32string_view segment = text.substr(pos, end - pos);
    if (segment.find('<') != std::u32string_view::npos) unescape_html = false;
    out += fix_segment(segment, unescape_html);
    pos = end;
  }
  return out;
}

std::u32string TextCleaner::html_unescape(std::u32string_view text) {
  return python_html_unescape(text);
}

std::u32string TextCleaner::collapse_whitespace(std::u32string_view text) {
  // strip(), runs of \s to one space, strip(). The regex module's \s lacks
  // U+001C..U+001F, which isspace() has, but ftfy has removed those already.
  std::u32string out;
  out.reserve(text.size());
  bool space_pending = false;
  for (char32_t c : text) {
    if (is_space(c)) {
      space_pending = !out.empty();
      continue;
    }
    if (space_pending) out.push_back(' ');
    space_pending = false;
    out.push_back(c);
  }
  return out;
}

std::u32string TextCleaner::lower(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t c = text[i];
    if (c < 0x80) {
      out.push_back(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    } else if (c == 0x0130) {
      out += U"i\u0307";  // the one unconditional multi-character lower case
    } else if (c == 0x03A3) {
      out.push_back(is_final_sigma(text, i) ? 0x03C2 : 0x03C3);
    } else {
      out.push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
    }
  }
  return out;
}

std::u32string TextCleaner::clean(std::string_view utf8) {
  std::u32string text = fix_text(decode_utf8(utf8));
  text = html_unescape(html_unescape(text));
  return lower(collapse_whitespace(text));
}

std::string TextCleaner::clean_utf8(std::string_view utf8) { return encode_utf8(clean(utf8)); }

}  // namespace refinery
