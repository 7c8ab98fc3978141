// Tokens and roles: the tokens file as an operator writes it, the checks as a
// caller meets them (access_control_server_test.cpp: through a real server).
#include "server/runtime/access_control.h"

#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <thread>
#include <utility>
#include <vector>

#include "core/base/error.h"
#include "refinery/v1/embedding.pb.h"
#include "refinery/v1/index.pb.h"
#include "refinery/v1/job.pb.h"
#include "refinery/v1/model.pb.h"
#include "support/fixture.h"
#include "support/errors.h"

namespace refinery {
namespace {

using testing::TempDir;

const std::string kAdmin = "admin-token-0123456789abcdef";
const std::string kTrainer = "trainer-token-0123456789abcdef";
const std::string kReader = "reader-token-0123456789abcdef";

std::string tokens_file(const TempDir& dir, const std::string& text, const std::string& name = "tokens") {
  testing::write_file(dir / name, text);
  return dir / name;
}

std::string standard_tokens(const TempDir& dir) {
  return tokens_file(dir, "# who may call refineryd\n" + kAdmin + " admin alice\n" + kTrainer + " trainer   bob  # CI\n\n" +
                              kReader + " reader\n");
}

using testing::error_of;

TEST(AccessControl, EveryMethodOfEveryServiceHasARole) {
  // Each service from its own file's descriptor (naming a message of the file
  // also links the file in).
  int methods = 0;
  for (const auto* file : {v1::EmbedResponse::descriptor()->file(), v1::SearchRequest::descriptor()->file(),
                           v1::Job::descriptor()->file(), v1::ModelInfo::descriptor()->file()}) {
    ASSERT_EQ(file->service_count(), 1) << file->name();
    const auto* service = file->service(0);
    for (int i = 0; i < service->method_count(); ++i, ++methods) {
      EXPECT_NO_THROW(required_role(service->method(i)->name())) << service->method(i)->full_name();
    }
  }
  EXPECT_GE(methods, 27);
  EXPECT_EQ(error_of([] { required_role("NoSuchMethod"); }).code(), ErrorCode::kInternal);
}

TEST(AccessControl, ReadersServeTrainersTrainAdminsManageModels) {
  EXPECT_EQ(required_role("EmbedImage"), Role::kReader);
  EXPECT_EQ(required_role("Search"), Role::kReader);
  EXPECT_EQ(required_role("WatchJob"), Role::kReader);
  EXPECT_EQ(required_role("SubmitJob"), Role::kTrainer);
  EXPECT_EQ(required_role("AddItems"), Role::kTrainer);
  EXPECT_EQ(required_role("ImportModel"), Role::kAdmin);
  EXPECT_EQ(required_role("ExportModel"), Role::kAdmin);
  EXPECT_EQ(required_role("DropIndex"), Role::kAdmin);
}

TEST(AccessControl, ReadsTheTextFormWithNamesCommentsAndBlankLines) {
  TempDir dir;
  const auto entries = read_tokens_file(standard_tokens(dir));
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].principal.name, "alice");
  EXPECT_EQ(entries[0].principal.role, Role::kAdmin);
  EXPECT_EQ(entries[1].principal.name, "bob");
  EXPECT_EQ(entries[1].principal.role, Role::kTrainer);
  EXPECT_EQ(entries[2].principal.name, "line 5");
  EXPECT_EQ(entries[2].token, kReader);
}

TEST(AccessControl, ReadsTheJsonForms) {
  TempDir dir;
  const std::string array = "[{\"token\": \"" + kAdmin + "\", \"role\": \"admin\", \"name\": \"ops\"}, {\"token\": \"" +
                            kReader + "\", \"role\": \"reader\"}]";
  for (const auto& text : {array, "{\"tokens\": " + array + "}"}) {
    const auto entries = read_tokens_file(tokens_file(dir, text));
    ASSERT_EQ(entries.size(), 2u);
    EXPECT_EQ(entries[0].principal.name, "ops");
    EXPECT_EQ(entries[1].principal.name, "entry 2");
    EXPECT_EQ(entries[1].principal.role, Role::kReader);
  }
}

TEST(AccessControl, ABadFileIsRefusedNamingTheLineAndNeverTheToken) {
  TempDir dir;
  struct Case {
    std::string text, expected;
  };
  const std::vector<Case> cases = {
      {kAdmin + " admin\n" + kReader + " superuser\n", "line 2: unknown role 'superuser'"},
      {"\n\nshort-token admin\n", "line 3: token too short (11 characters"},
      {kAdmin + "\n", "line 1: expected `TOKEN ROLE [NAME]`, found 1 field"},
      {kAdmin + " admin a b\n", "line 1: expected `TOKEN ROLE [NAME]`, found 4 field"},
      {kAdmin + " admin alice\n" + kAdmin + " reader bob\n", "bob repeats the token of alice"},
      {"# nobody\n", "no tokens"},
      {"[{\"token\": \"" + kAdmin + "\", \"role\": \"root\"}]", "entry 1: unknown role 'root'"},
      {"[{\"token\": \"" + kAdmin + "\", \"role\": \"admin\", \"expires\": 1}]", "entry 1: unknown key 'expires'"},
      {"[{\"token\": \"" + kAdmin + "\", \"role\": \"admin\"", "not valid JSON"},
  };
  for (const auto& c : cases) {
    const auto path = tokens_file(dir, c.text);
    const Error e = error_of([&] { read_tokens_file(path); });
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << c.text;
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(c.expected), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find(kAdmin), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find(kReader), std::string::npos) << e.what();
  }
  EXPECT_NE(std::string(error_of([&] { read_tokens_file(dir / "absent"); }).what()).find("--auth-tokens"),
            std::string::npos);
}

TEST(AccessControl, AMissingOrUnknownTokenIsUnauthenticatedARoleTooLowIsPermissionDenied) {
  TempDir dir;
  AccessControl access(standard_tokens(dir));
  EXPECT_EQ(access.summary(), "3 token(s): 1 admin, 1 trainer, 1 reader");

  const Error none = error_of([&] { access.authorize_header("", "EmbedText"); });
  EXPECT_EQ(none.code(), ErrorCode::kUnauthenticated);
  EXPECT_NE(std::string(none.what()).find("EmbedText needs a token"), std::string::npos) << none.what();
  EXPECT_EQ(error_of([&] { access.authorize_header("Bearer " + kAdmin + "x", "EmbedText"); }).code(),
            ErrorCode::kUnauthenticated);
  EXPECT_EQ(error_of([&] { access.authorize_header("Basic " + kAdmin, "EmbedText"); }).code(),
            ErrorCode::kUnauthenticated);
  EXPECT_EQ(error_of([&] { access.authorize_header("Bearer " + kAdmin.substr(0, 20), "EmbedText"); }).code(),
            ErrorCode::kUnauthenticated);

  const Error low = error_of([&] { access.authorize_header("Bearer " + kReader, "SubmitJob"); });
  EXPECT_EQ(low.code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(std::string(low.what()).find("SubmitJob needs role trainer; the token of line 5 has role reader"),
            std::string::npos)
      << low.what();
  EXPECT_EQ(error_of([&] { access.authorize_header("Bearer " + kTrainer, "ImportModel"); }).code(),
            ErrorCode::kPermissionDenied);

  EXPECT_EQ(access.authorize_header("Bearer " + kReader, "Search").name, "line 5");
  EXPECT_EQ(access.authorize_header("bearer " + kTrainer, "SubmitJob").name, "bob");
  EXPECT_EQ(access.authorize_header("Bearer " + kAdmin, "DeleteModel").role, Role::kAdmin);
  EXPECT_EQ(access.authorize_header("Bearer " + kAdmin, "EmbedText").name, "alice");  // admin may read
}

TEST(AccessControl, AReloadTakesEffectAndABrokenFileKeepsTheOldTokens) {
  TempDir dir;
  const auto path = standard_tokens(dir);
  AccessControl access(path);
  const std::string fresh = "fresh-token-0123456789abcdef";
  tokens_file(dir, fresh + " trainer carol\n" + kAdmin + " reader alice\n");
  access.reload();
  EXPECT_EQ(access.authorize_header("Bearer " + fresh, "SubmitJob").name, "carol");
  EXPECT_EQ(error_of([&] { access.authorize_header("Bearer " + kTrainer, "GetJob"); }).code(),
            ErrorCode::kUnauthenticated);  // bob's token is gone
  EXPECT_EQ(error_of([&] { access.authorize_header("Bearer " + kAdmin, "DeleteModel"); }).code(),
            ErrorCode::kPermissionDenied);  // alice was demoted

  tokens_file(dir, fresh + " wizard\n");
  EXPECT_EQ(error_of([&] { access.reload(); }).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(access.authorize_header("Bearer " + fresh, "SubmitJob").name, "carol");
}

// SIGHUP arrives while calls are being checked: every check sees either the
// old tokens or the new ones, whole, and never a half-read file (the TSan
// lane runs this).
TEST(AccessControl, ChecksDuringReloadsSeeOneFileOrTheOther) {
  TempDir dir;
  const auto path = standard_tokens(dir);
  const std::string old_text = testing::read_file(path);
  const std::string fresh = "fresh-token-0123456789abcdef";
  const std::string new_text = kAdmin + " admin alice\n" + fresh + " trainer carol\n";
  AccessControl access(path);

  std::atomic<bool> stop{false};
  std::atomic<int> checks{0}, bad{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      while (!stop) {
        // alice is admin in both files.
        if (access.authorize_header("Bearer " + kAdmin, "DeleteModel").name != "alice") ++bad;
        // bob is in the old file only, carol in the new one only: each
        // check finds its caller whole, or not at all.
        for (const auto& [token, name] : {std::pair{kTrainer, "bob"}, std::pair{fresh, "carol"}}) {
          try {
            if (access.authorize_header("Bearer " + token, "SubmitJob").name != name) ++bad;
          } catch (const Error& e) {
            if (e.code() != ErrorCode::kUnauthenticated) ++bad;
          }
        }
        ++checks;
      }
    });
  }
  for (int i = 0; i < 200; ++i) {
    testing::write_file(path + ".next", i % 2 ? old_text : new_text);
    ASSERT_EQ(std::rename((path + ".next").c_str(), path.c_str()), 0);
    access.reload();
  }
  stop = true;
  for (auto& t : callers) t.join();
  EXPECT_GT(checks.load(), 0);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(access.authorize_header("Bearer " + kTrainer, "SubmitJob").name, "bob");  // the last file was the old one
}

}  // namespace
}  // namespace refinery
