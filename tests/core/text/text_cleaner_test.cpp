// Each expected string here is worked out by hand from the rule named in
// the test (ftfy 6, CPython's html.unescape / str.lower / str.isspace), not
// copied from the implementation's output.
#include "core/text/text_cleaner.h"

#include <gtest/gtest.h>

#include <string>

namespace refinery {
namespace {

std::string fix(const std::string& text) {
  return encode_utf8(TextCleaner::fix_text(decode_utf8(text)));
}

std::string clean(const std::string& text) { return TextCleaner::clean_utf8(text); }

TEST(TextCleaner, UnescapesHtmlEntitiesAsTheReferenceDoes) {
  EXPECT_EQ(clean("HTML entities: Tom &amp; Jerry &lt;3 &quot;quoted&quot; &#39;single&#39;"),
            "html entities: tom & jerry <3 \"quoted\" 'single'");
  // Decimal and hexadecimal references, either case of 'x'.
  EXPECT_EQ(clean("&#65;&#x42;&#X43;"), "abc");
  // ftfy repeats until nothing changes, so double escaping comes undone too.
  EXPECT_EQ(clean("&amp;lt;b&amp;gt;"), "<b>");
  // html.unescape knows the legacy names that need no semicolon...
  EXPECT_EQ(clean("fish &amp chips &copy 2024"), "fish & chips \u00a9 2024");
  // ...and reads the longest such prefix of an unknown name.
  EXPECT_EQ(clean("&ampx;"), "&x;");
  EXPECT_EQ(clean("&bogus;"), "&bogus;");
}

TEST(TextCleaner, ReplacesInvalidNumericReferencesAsPython) {
  // NUL, a surrogate and a number past U+10FFFF become U+FFFD; 128 is read
  // as Windows-1252 (the euro sign); a C0 control reference disappears.
  EXPECT_EQ(clean("a&#0;b &#128; &#x110000; &#xD800; c&#1;d &#99999999999999999999;"),
            "a\ufffdb \u20ac \ufffd \ufffd cd \ufffd");
}

TEST(TextCleaner, DecodesAllCapsEntitiesAsFtfy) {
  EXPECT_EQ(clean("P&EACUTE;REZ"), "p\u00e9rez");
  // The upper case of '\u00df' is "SS".
  EXPECT_EQ(clean("STRA&SZLIG;E"), "strasse");
}

TEST(TextCleaner, LeavesEntitiesToHtmlUnescapeOnLinesThatLookLikeHtml) {
  // Without '<', ftfy decodes the curly quotes first and then straightens
  // them; with '<' on the line (or an earlier one) only html.unescape runs,
  // after ftfy, so the quotes stay curly.
  EXPECT_EQ(clean("&ldquo;hi&rdquo;"), "\"hi\"");
  EXPECT_EQ(clean("<b>&ldquo;hi&rdquo;</b>"), "<b>\u201chi\u201d</b>");
  EXPECT_EQ(clean("x < y\n&ldquo;q&rdquo;"), "x < y \u201cq\u201d");
  EXPECT_EQ(clean("&ldquo;q&rdquo;\nx < y"), "\"q\" x < y");
}

TEST(TextCleaner, NormalisesToNfc) {
  EXPECT_EQ(fix("cafe\u0301"), "caf\u00e9");
  EXPECT_EQ(fix("\u1100\u1161"), "\uac00");  // conjoining jamo compose to one syllable
  // NFC, not NFKC: the ellipsis and superscripts stay.
  EXPECT_EQ(fix("x\u00b2\u2026"), "x\u00b2\u2026");
}

TEST(TextCleaner, StraightensCurlyQuotes) {
  EXPECT_EQ(clean("\u201cCurly quotes\u201d and \u2018single ones\u2019 \u2026 ellipsis"),
            "\"curly quotes\" and 'single ones' \u2026 ellipsis");
  EXPECT_EQ(fix("\u201a\u201b\u201e\u201f\u02bc"), "''\"\"'");
}

TEST(TextCleaner, SplitsLatinLigatures) {
  EXPECT_EQ(fix("\ufb01ne \ufb02ow \ufb00 \ufb03 \ufb04 \ufb05 \ufb06 \u0132 \u0133 \u01c5 \u01c9"),
            "fine flow ff ffi ffl \u017ft st IJ ij D\u017e lj");
  // U+0149 splits into U+02BC + n, whose apostrophe is then straightened.
  EXPECT_EQ(fix("\u0149"), "'n");
  EXPECT_EQ(clean("\ufb01ne ligatures and \uff26\uff35\uff2c\uff2c\uff37\uff29\uff24\uff34\uff28 letters"),
            "fine ligatures and fullwidth letters");
}

TEST(TextCleaner, NarrowsFullWidthAndWidensHalfWidthForms) {
  EXPECT_EQ(fix("\uff26\uff35\uff2c\uff2c\u3000\uff11\uff12\uff13\uff01"), "FULL 123!");
  EXPECT_EQ(fix("\uff76\uff80\uff76\uff85"), "\u30ab\u30bf\u30ab\u30ca");
  // A half-width voiced mark becomes the combining one and NFC joins it.
  EXPECT_EQ(fix("\uff76\uff9e"), "\u30ac");
}

TEST(TextCleaner, RemovesControlCharacters) {
  EXPECT_EQ(fix("a\x01" "b\x7f" "c\ufeff" "d\u206a" "e\ufff9" "f\x0b" "g"), "abcdefg");
  // Tab, line feed and form feed are kept.
  EXPECT_EQ(fix("a\tb\x0c" "c\n"), "a\tb\x0c" "c\n");
}

TEST(TextCleaner, RemovesTerminalEscapes) {
  EXPECT_EQ(fix("\x1b[31mred\x1b[0m and \x1b[1;4mbold\x1b[m"), "red and bold");
  // Not an escape the pattern knows: only the ESC control itself goes.
  EXPECT_EQ(fix("a\x1b[?25hb"), "a[?25hb");
}

TEST(TextCleaner, ReadsC1ControlsAsWindows1252) {
  EXPECT_EQ(fix("\u0093quoted\u0094 \u0080 \u0085"), "\"quoted\" \u20ac \u2026");
}

TEST(TextCleaner, FixesLineBreaks) {
  EXPECT_EQ(fix("a\r\nb\rc\u2028d\u2029e"), "a\nb\nc\nd\ne");
}

TEST(TextCleaner, CollapsesUnicodeWhitespace) {
  EXPECT_EQ(clean("   leading and trailing   spaces\tand\ttabs\nand newlines   "),
            "leading and trailing spaces and tabs and newlines");
  EXPECT_EQ(clean("a\u00a0b\u2003c\u202fd\u205fe\u3000f"), "a b c d e f");
  EXPECT_EQ(clean(" \t\n "), "");
  EXPECT_EQ(clean(""), "");
  // str.strip() also takes the information separators U+001C..U+001F.
  EXPECT_EQ(encode_utf8(TextCleaner::collapse_whitespace(U"\x1c a  b \x1f")), "a b");
  EXPECT_FALSE(TextCleaner::is_space(0x200b));  // zero-width space is no space
}

TEST(TextCleaner, LowerCasesAsPython) {
  EXPECT_EQ(TextCleaner::lower(U"\u00c0\u00c9\u00ce \u042d\u0422\u0410"), U"\u00e0\u00e9\u00ee \u044d\u0442\u0430");
  // Capital I with dot above lowers to two code points.
  EXPECT_EQ(TextCleaner::lower(U"\u0130"), U"i\u0307");
  // Final sigma after a cased letter at a word's end, also before '.'.
  EXPECT_EQ(TextCleaner::lower(U"\u03a3\u0391\u03a3 \u039f\u0394\u039f\u03a3. \u03a3"),
            U"\u03c3\u03b1\u03c2 \u03bf\u03b4\u03bf\u03c2. \u03c3");
  EXPECT_EQ(clean("UPPER CASE CAPTION WITH NUMBERS 1234567890"),
            "upper case caption with numbers 1234567890");
}

TEST(TextCleaner, ReplacesInvalidUtf8) {
  // One U+FFFD per maximal ill-formed subsequence, as Python's decoder.
  EXPECT_EQ(clean("a\xff" "b\xe2\x82"), "a\ufffdb\ufffd");
  EXPECT_EQ(decode_utf8("\xed\xa0\x80"), U"\ufffd\ufffd\ufffd");  // an encoded surrogate
  EXPECT_EQ(decode_utf8("\xf0\x9f\x90\xb6"), U"\U0001f436");
}

}  // namespace
}  // namespace refinery
