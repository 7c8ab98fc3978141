#include "server/runtime/access_control.h"

#include <grpcpp/server_context.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/base/error.h"

namespace refinery {
namespace {

constexpr size_t kMinTokenLength = 16;

const std::map<std::string, Role>& role_table() {
  static const std::map<std::string, Role> table = {
      // EmbeddingService
      {"EmbedText", Role::kReader},
      {"EmbedImage", Role::kReader},
      {"Classify", Role::kReader},
      {"Rank", Role::kReader},
      // IndexService
      {"ListIndexes", Role::kReader},
      {"GetIndex", Role::kReader},
      {"Search", Role::kReader},
      {"CreateIndex", Role::kTrainer},
      {"AddItems", Role::kTrainer},
      {"DeleteItems", Role::kTrainer},
      {"DropIndex", Role::kAdmin},
      // JobService
      {"GetJob", Role::kReader},
      {"ListJobs", Role::kReader},
      {"WatchJob", Role::kReader},
      {"GetSweep", Role::kReader},
      {"ListSweeps", Role::kReader},
      {"SubmitJob", Role::kTrainer},
      {"CancelJob", Role::kTrainer},
      {"ResumeJob", Role::kTrainer},
      {"DeleteJob", Role::kTrainer},
      {"SubmitSweep", Role::kTrainer},
      {"CancelSweep", Role::kTrainer},
      // ModelService
      {"ListModels", Role::kReader},
      {"GetModel", Role::kReader},
      {"ImportModel", Role::kAdmin},
      {"ExportModel", Role::kAdmin},
      {"DeleteModel", Role::kAdmin},
  };
  return table;
}

// Compares every byte of the longer string, so the time taken does not tell
// how much of a guess was right.
bool equal_constant_time(const std::string& a, const std::string& b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

void check_token(const std::string& token, const std::string& where) {
  if (token.size() < kMinTokenLength) {
    throw invalid_argument(where + ": token too short (" + std::to_string(token.size()) + " characters, at least " +
                           std::to_string(kMinTokenLength) + "); make one with `openssl rand -hex 24`");
  }
  for (const char c : token) {
    if (c <= ' ' || c > '~') throw invalid_argument(where + ": token has a space or a non-printable character");
  }
}

std::vector<TokenEntry> parse_text(const std::string& path, std::istream& in) {
  std::vector<TokenEntry> out;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line.erase(hash);
    std::istringstream fields(line);
    std::vector<std::string> words;
    for (std::string w; fields >> w;) words.push_back(w);
    if (words.empty()) continue;
    const std::string where = path + " line " + std::to_string(number);
    if (words.size() < 2 || words.size() > 3) {
      throw invalid_argument(where + ": expected `TOKEN ROLE [NAME]`, found " + std::to_string(words.size()) +
                             " field(s)");
    }
    check_token(words[0], where);
    TokenEntry e;
    e.token = words[0];
    try {
      e.principal.role = parse_role(words[1]);
    } catch (const Error& err) {
      throw invalid_argument(where + ": " + err.what());
    }
    e.principal.name = words.size() == 3 ? words[2] : "line " + std::to_string(number);
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<TokenEntry> parse_json(const std::string& path, const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw invalid_argument(path + ": not valid JSON: " + without_quoted_input(e.what()));
  }
  if (j.is_object() && j.contains("tokens")) j = j["tokens"];
  if (!j.is_array()) throw invalid_argument(path + ": expected a JSON array of {\"token\", \"role\", \"name\"}");
  std::vector<TokenEntry> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string where = path + " entry " + std::to_string(i + 1);
    const auto& item = j[i];
    if (!item.is_object() || !item.contains("token") || !item["token"].is_string() || !item.contains("role") ||
        !item["role"].is_string()) {
      throw invalid_argument(where + ": expected an object with string \"token\" and \"role\"");
    }
    for (auto it = item.begin(); it != item.end(); ++it) {
      if (it.key() != "token" && it.key() != "role" && it.key() != "name") {
        throw invalid_argument(where + ": unknown key '" + it.key() + "'");
      }
    }
    TokenEntry e;
    e.token = item["token"].get<std::string>();
    check_token(e.token, where);
    try {
      e.principal.role = parse_role(item["role"].get<std::string>());
    } catch (const Error& err) {
      throw invalid_argument(where + ": " + err.what());
    }
    e.principal.name = item.contains("name") && item["name"].is_string() ? item["name"].get<std::string>()
                                                                          : "entry " + std::to_string(i + 1);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

const char* role_name(Role role) {
  switch (role) {
    case Role::kReader: return "reader";
    case Role::kTrainer: return "trainer";
    case Role::kAdmin: return "admin";
  }
  return "?";
}

Role parse_role(const std::string& name) {
  if (name == "reader") return Role::kReader;
  if (name == "trainer") return Role::kTrainer;
  if (name == "admin") return Role::kAdmin;
  throw invalid_argument("unknown role '" + name + "' (reader, trainer or admin)");
}

Role required_role(const std::string& method) {
  const auto& table = role_table();
  const auto it = table.find(method);
  if (it == table.end()) throw internal_error("method " + method + " has no role in access_control.cpp");
  return it->second;
}

std::vector<TokenEntry> read_tokens_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw invalid_argument(path + ": cannot read the tokens file (--auth-tokens)");
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  const size_t first = text.find_first_not_of(" \t\r\n");
  std::vector<TokenEntry> entries;
  if (first != std::string::npos && (text[first] == '[' || text[first] == '{')) {
    entries = parse_json(path, text);
  } else {
    std::istringstream lines(text);
    entries = parse_text(path, lines);
  }
  if (entries.empty()) throw invalid_argument(path + ": no tokens (a tokens file that admits nobody is a mistake)");
  for (size_t i = 0; i < entries.size(); ++i) {
    for (size_t k = 0; k < i; ++k) {
      if (entries[k].token == entries[i].token) {
        throw invalid_argument(path + ": " + entries[i].principal.name + " repeats the token of " +
                               entries[k].principal.name);
      }
    }
  }
  return entries;
}

AccessControl::AccessControl(std::string tokens_file) : tokens_file_(std::move(tokens_file)) { reload(); }

void AccessControl::reload() {
  auto fresh = std::make_shared<const std::vector<TokenEntry>>(read_tokens_file(tokens_file_));
  std::lock_guard<std::mutex> lock(mu_);
  tokens_ = std::move(fresh);
}

Principal AccessControl::authorize(const grpc::ServerContext& context, const std::string& method) const {
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  const std::string header = it == metadata.end() ? "" : std::string(it->second.data(), it->second.size());
  return authorize_header(header, method);
}

Principal AccessControl::authorize_header(const std::string& authorization, const std::string& method) const {
  const Role needed = required_role(method);
  if (authorization.empty()) {
    throw unauthenticated(method + " needs a token: send `authorization: Bearer TOKEN` (refinery --token or "
                          "REFINERY_TOKEN)");
  }
  const std::string scheme = "bearer ";
  std::string lowered = authorization.substr(0, scheme.size());
  std::transform(lowered.begin(), lowered.end(), lowered.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lowered != scheme) throw unauthenticated(method + ": the authorization metadata is not `Bearer TOKEN`");
  const std::string presented = authorization.substr(scheme.size());
  std::shared_ptr<const std::vector<TokenEntry>> tokens;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tokens = tokens_;
  }
  const TokenEntry* match = nullptr;
  for (const auto& entry : *tokens) {
    if (equal_constant_time(entry.token, presented)) match = &entry;
  }
  if (match == nullptr) throw unauthenticated(method + ": unknown token");
  if (match->principal.role < needed) {
    throw permission_denied(method + " needs role " + role_name(needed) + "; the token of " + match->principal.name +
                            " has role " + role_name(match->principal.role));
  }
  return match->principal;
}

std::string AccessControl::summary() const {
  std::shared_ptr<const std::vector<TokenEntry>> tokens;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tokens = tokens_;
  }
  int count[3] = {0, 0, 0};
  for (const auto& e : *tokens) ++count[static_cast<int>(e.principal.role)];
  return std::to_string(tokens->size()) + " token(s): " + std::to_string(count[2]) + " admin, " +
         std::to_string(count[1]) + " trainer, " + std::to_string(count[0]) + " reader";
}

}  // namespace refinery
