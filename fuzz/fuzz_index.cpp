// Loading a vector index folder (manifest.json, vectors.f32, items.bin and
// faiss.index), as refineryd does for every index at start-up, then a
// search on what loaded. The files are the server's own, guarded by the
// manifest's sizes and checksums; this target checks that whatever a disk
// or an operator leaves there is refused cleanly, never a crash.
//
// Input: a mode byte, then parts split by "\n--part--\n": the manifest JSON,
// items.bin, faiss.index. Mode 0 writes the manifest as it is (the checksums
// almost never match, so this explores the manifest); mode 1 fills in the
// true sizes and checksums of the other files and writes vectors.f32 to the
// size slots x dim implies (up to 4 MiB), so the records and the FAISS
// structure are read too.
#include <sys/stat.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/index/durable_file.h"
#include "core/index/vector_index.h"
#include "fuzz_input.h"

namespace {

nlohmann::json file_entry(const std::string& bytes) {
  refinery::index_internal::Checksum sum;
  sum.update(bytes.data(), bytes.size());
  return {{"bytes", bytes.size()}, {"checksum", refinery::index_internal::Checksum::hex(sum.digest())}};
}

// slots x dim x 4 bytes of small non-zero floats, when the manifest's
// numbers make that at most 4 MiB; otherwise empty.
std::string vectors_for(const nlohmann::json& m) {
  if (!m.contains("slots") || !m.contains("dim") || !m["slots"].is_number_unsigned() ||
      !m["dim"].is_number_unsigned()) {
    return {};
  }
  const uint64_t slots = m["slots"].get<uint64_t>(), dim = m["dim"].get<uint64_t>();
  if (dim == 0 || slots > (uint64_t{1} << 20) / dim) return {};
  std::vector<float> v(slots * dim);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 7919) % 17) - 8.0f;
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace refinery;
  if (size < 1) return 0;
  const bool fix_up = (data[0] & 1) != 0;
  const std::vector<std::string> parts =
      fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  auto part = [&](size_t i) { return i < parts.size() ? parts[i] : std::string(); };

  const std::string dir = fuzz::input_path("index");
  ::mkdir(dir.c_str(), 0700);
  std::string manifest = part(0);
  std::string vectors;
  if (fix_up) {
    nlohmann::json m = nlohmann::json::parse(manifest, nullptr, /*allow_exceptions=*/false);
    if (!m.is_object()) return 0;
    vectors = vectors_for(m);
    m["files"] = {{"vectors.f32", file_entry(vectors)}, {"items.bin", file_entry(part(1))},
                  {"faiss.index", file_entry(part(2))}};
    manifest = m.dump();
  }
  fuzz::write_file(dir + "/manifest.json", manifest);
  fuzz::write_file(dir + "/vectors.f32", vectors);
  fuzz::write_file(dir + "/items.bin", part(1));
  fuzz::write_file(dir + "/faiss.index", part(2));

  fuzz::expect_clean([&] {
    auto index = VectorIndex::load(dir);
    std::vector<float> query(static_cast<size_t>(index->dim()), 0.0f);
    query[0] = 1.0f;
    index->search(query, 3);
  });
  return 0;
}
