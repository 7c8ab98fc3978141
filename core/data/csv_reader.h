// Reading small text tables: whole text files (UTF-8 BOM dropped) and RFC
// 4180 CSV. Shared by the caption and class data sets; messages name the
// file as the caller describes it (`what`, e.g. "csv file 'a.csv'").
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace refinery {

struct CsvRecord {
  size_t line = 0;  // where the record starts, 1-based
  std::vector<std::string> fields;
};

// The whole file. INVALID_ARGUMENT ("<what>: file does not exist", "not a
// regular file", "cannot be opened for reading", "read error").
std::string read_text_file(const std::string& path, const std::string& what);

// RFC 4180: fields separated by commas, records by CRLF or LF; a quoted field
// may hold commas, line breaks and doubled quotes. Blank lines are skipped.
// INVALID_ARGUMENT naming the line of an unterminated quote or of a stray
// character after a closing quote.
std::vector<CsvRecord> parse_csv(const std::string& text, const std::string& what);

// Surrounding whitespace removed.
std::string trim_whitespace(const std::string& s);

}  // namespace refinery
