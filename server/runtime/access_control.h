// Who may call what. Callers present a bearer token (`authorization: Bearer
// TOKEN` metadata); the tokens file gives each token a role, and every RPC
// method needs one role:
//   reader   embed, classify, rank, search; list and show models, indexes,
//            jobs and sweeps; watch jobs
//   trainer  reader + submit/cancel/resume/delete jobs and sweeps, create
//            indexes and add/delete their items
//   admin    trainer + import/export/delete models, drop indexes
// grpc.health.v1 and reflection are not RPCs of ours and stay open.
//
// The tokens file has one `TOKEN ROLE [NAME]` per line ('#' comments and blank
// lines allowed), or is JSON: [{"token": ..., "role": ..., "name": ...}] (also
// as {"tokens": [...]}). Tokens are at least 16 printable characters with no
// spaces. Errors name the file and line (or entry), never a token.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace grpc {
class ServerContext;
}

namespace refinery {

enum class Role { kReader = 0, kTrainer = 1, kAdmin = 2 };

const char* role_name(Role role);
Role parse_role(const std::string& name);  // throws invalid_argument naming it

// The role a method of a refinery.v1 service needs ("EmbedText",
// "ImportModel"). Throws internal_error for a method the table lacks: a new
// RPC must be given a role here before it can be called.
Role required_role(const std::string& method);

struct Principal {
  std::string name;  // NAME from the file, else "line N" / "entry N"
  Role role = Role::kReader;
};

struct TokenEntry {
  std::string token;
  Principal principal;
};

// Parses a tokens file (text or JSON, see above). Throws invalid_argument
// naming `path` and the line or entry.
std::vector<TokenEntry> read_tokens_file(const std::string& path);

class AccessControl {
 public:
  // Reads `tokens_file` (see read_tokens_file).
  explicit AccessControl(std::string tokens_file);

  // Re-reads the file (SIGHUP). On an error the old tokens stay in force and
  // the error is thrown.
  void reload();

  // The caller of `method`, from the context's `authorization` metadata.
  // Throws unauthenticated (no or unknown token) or permission_denied (role
  // too low), each naming the method.
  Principal authorize(const grpc::ServerContext& context, const std::string& method) const;

  // The same check on a raw header value ("Bearer TOKEN"; empty = none).
  Principal authorize_header(const std::string& authorization, const std::string& method) const;

  // "3 tokens: 1 admin, 1 trainer, 1 reader".
  std::string summary() const;
  const std::string& tokens_file() const { return tokens_file_; }

 private:
  std::string tokens_file_;
  mutable std::mutex mu_;
  std::shared_ptr<const std::vector<TokenEntry>> tokens_;
};

}  // namespace refinery
