#include "core/safetensors/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "core/base/error.h"
#include "support/fixture.h"

namespace refinery {
namespace {

using testing::TempDir;

// Builds a file byte by byte so each corruption is exactly the one named.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(&out[0], &n, 8);
  return out + header + data;
}

std::string open_error(const std::string& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, WriteThenReadKeepsTensorsMetadataAndDtypes) {
  TempDir dir;
  const std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 1e-7f, 6e4f};
  const std::vector<int32_t> b = {49406, 7, 49407};
  SafetensorsWriter w;
  w.add_float32("a", {2, 3}, a.data());
  w.add_int32("b", {3}, b.data());
  const uint16_t half_one = 0x3c00, half_minus_two = 0xc000;
  const uint16_t halves[] = {half_one, half_minus_two};
  w.add("h", DType::kF16, {2}, halves, sizeof halves);
  w.set_metadata("note", "hello");
  w.write(dir / "t.safetensors");

  auto f = SafetensorsFile::open(dir / "t.safetensors");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b", "h"}));
  EXPECT_EQ(f.at("a").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.at("a").to_floats(), a);
  EXPECT_EQ(f.at("b").to_int32s(), b);
  EXPECT_EQ(f.at("h").to_floats(), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(f.metadata().at("note"), "hello");
  // The data section starts 8-byte aligned so tensors can be used in place.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.at("a").data) % 8, 0u);
}

TEST(Safetensors, ReadsTheReferenceFixture) {
  auto f = SafetensorsFile::open(testing::fixture("reference.safetensors"));
  EXPECT_EQ(f.at("tokens").dtype, DType::kI32);
  EXPECT_EQ(f.at("tokens").shape, (std::vector<int64_t>{200, 77}));
  EXPECT_EQ(f.at("tokens").to_int32s()[0], 49406);  // every row starts with SOT
  EXPECT_EQ(f.at("image_pixels").shape, (std::vector<int64_t>{9, 3, 64, 64}));
}

TEST(Safetensors, MissingFileIsNotFound) {
  try {
    SafetensorsFile::open("/nonexistent/x.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.safetensors"), std::string::npos);
  }
}

TEST(Safetensors, UnknownTensorNameIsNotFoundNamingIt) {
  TempDir dir;
  SafetensorsWriter w;
  const float x = 1;
  w.add_float32("x", {1}, &x);
  w.write(dir / "t.safetensors");
  auto f = SafetensorsFile::open(dir / "t.safetensors");
  try {
    f.at("missing.weight");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("missing.weight"), std::string::npos);
  }
}

struct Corruption {
  const char* name;
  std::string bytes;
  const char* expected;  // a phrase the error must contain
};

TEST(Safetensors, RejectsCorruptFilesWithAClearReason) {
  const std::string ok_data(8, '\0');
  const std::vector<Corruption> cases = {
      {"too_short", std::string("\x05\x00\x00", 3), "shorter than the 8-byte header"},
      {"header_past_end", raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", ok_data).substr(0, 20),
       "runs past the end"},
      {"bad_json", raw_file("{not json", ok_data), "not valid JSON"},
      {"not_object", raw_file("[1,2]", ok_data), "not a JSON object"},
      {"unknown_dtype", raw_file(R"({"a":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}})", ok_data), "F7"},
      {"offsets_past_end", raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", ok_data),
       "run past the end of the data"},
      {"size_mismatch", raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", ok_data),
       "shape and dtype need 12"},
      {"overlap",
       raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[2,10]}})",
                std::string(12, '\0')),
       "overlap"},
      {"reversed", raw_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", ok_data), "reversed"},
      {"negative_dim", raw_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", ok_data),
       "negative dimension"},
      {"no_offsets", raw_file(R"({"a":{"dtype":"F32","shape":[2]}})", ok_data), "data_offsets"},
      // A zero dimension makes the size 0, but the huge one after it would
      // be a negative int64 in the tensor's shape.
      {"zero_then_huge_dim",
       raw_file(R"({"a":{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}})", ok_data),
       "shape overflows"},
      {"huge_dims_product",
       raw_file(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", ok_data),
       "shape overflows"},
      // The parser's complaint, without the text it read.
      {"json_quotes_nothing", raw_file("{\"a\": SECRET-TEXT}", ok_data), "not valid JSON"},
  };
  TempDir dir;
  for (const auto& c : cases) {
    const std::string path = dir / (std::string(c.name) + ".safetensors");
    testing::write_file(path, c.bytes);
    const std::string error = open_error(path);
    EXPECT_NE(error.find(c.expected), std::string::npos) << c.name << ": got '" << error << "'";
    EXPECT_NE(error.find(path), std::string::npos) << c.name << ": error must name the file: " << error;
    EXPECT_EQ(error.find("SECRET"), std::string::npos) << c.name << ": error quotes the file: " << error;
  }
}

TEST(Safetensors, TruncatedRealCheckpointIsRejected) {
  TempDir dir;
  const std::string bytes = testing::read_file(testing::fixture("tiny.safetensors"));
  testing::write_file(dir / "cut.safetensors", bytes.substr(0, bytes.size() / 2));
  const std::string error = open_error(dir / "cut.safetensors");
  EXPECT_NE(error.find("truncated"), std::string::npos) << error;
}

TEST(Safetensors, FailedWriteLeavesTheOldFileIntact) {
  TempDir dir;
  const float x = 42;
  SafetensorsWriter good;
  good.add_float32("x", {1}, &x);
  good.write(dir / "t.safetensors");
  SafetensorsWriter bad;
  EXPECT_THROW(bad.add_float32("__metadata__", {1}, &x), Error);
  // Writing into a folder that does not exist fails before touching anything.
  EXPECT_THROW(good.write(dir / "no/such/dir/t.safetensors"), Error);
  EXPECT_EQ(SafetensorsFile::open(dir / "t.safetensors").at("x").to_floats()[0], 42.0f);
}

}  // namespace
}  // namespace refinery
