#include "core/data/csv_reader.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

#include "core/base/error.h"

namespace refinery {
namespace {

namespace fs = std::filesystem;

void strip_bom(std::string& text) {
  if (text.size() >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);
}

}  // namespace

std::string trim_whitespace(const std::string& s) {
  const char* ws = " \t\r\n\f\v";
  const size_t begin = s.find_first_not_of(ws);
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(ws) - begin + 1);
}

std::string read_text_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) throw invalid_argument(what + ": file does not exist");
  if (!fs::is_regular_file(st)) throw invalid_argument(what + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw invalid_argument(what + ": cannot be opened for reading");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw invalid_argument(what + ": read error");
  strip_bom(text);
  return text;
}

std::vector<CsvRecord> parse_csv(const std::string& text, const std::string& what) {
  std::vector<CsvRecord> records;
  const size_t n = text.size();
  size_t i = 0, line = 1;
  while (i < n) {
    CsvRecord rec;
    rec.line = line;
    bool any_quoted = false;
    for (;;) {  // one field per iteration
      std::string field;
      if (i < n && text[i] == '"') {
        any_quoted = true;
        const size_t start_line = line;
        ++i;
        for (;;) {
          if (i >= n) throw invalid_argument(what + " line " + std::to_string(start_line) + ": unterminated quoted field");
          const char c = text[i];
          if (c == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (c == '\n') ++line;
          field += c;
          ++i;
        }
        if (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r')
          throw invalid_argument(what + " line " + std::to_string(line) + ": unexpected character '" + std::string(1, text[i]) +
                                 "' after a closing quote (a quote inside a quoted field is written \"\")");
      } else {
        while (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r') field += text[i++];
      }
      rec.fields.push_back(std::move(field));
      if (i < n && text[i] == ',') {
        ++i;
        continue;  // (a trailing comma at the end of the text gives one more empty field)
      }
      if (i < n && text[i] == '\r') ++i;
      if (i < n && text[i] == '\n') ++i;
      ++line;
      break;
    }
    const bool blank = !any_quoted && rec.fields.size() == 1 && trim_whitespace(rec.fields[0]).empty();
    if (!blank) records.push_back(std::move(rec));
  }
  return records;
}

}  // namespace refinery
