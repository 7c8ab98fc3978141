// What `models import` and the registry run on a client-named checkpoint
// before any weight is read: format sniffing, then the header of a
// safetensors file or of a Hugging Face folder (config.json, one weights
// file or an index of shards), Hugging Face name mapping on shapes, and the
// architecture declared in metadata or inferred from the shapes.
//
// Input: a mode byte, then parts split by "\n--part--\n":
//   0  one file, as it is: sniffed, then read as a checkpoint (any form)
//   1  one safetensors file made from a header (below)
//   2  a folder: config.json, model.safetensors
//   3  a folder: config.json, model.safetensors.index.json, shard.safetensors
// Safetensors parts are written as the 8-byte header length, the header
// JSON, then zeros up to the largest data offset the header names (capped
// at 4 MiB), so that mutations explore the header and not the tensor bytes
// (fuzz_safetensors covers the file format itself).
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "core/checkpoint/checkpoint_header.h"
#include "fuzz_input.h"

namespace {

// The largest number after "data_offsets" in the header; 0 when none.
uint64_t largest_offset(const std::string& header) {
  uint64_t largest = 0;
  for (size_t at = header.find("data_offsets"); at != std::string::npos; at = header.find("data_offsets", at + 1)) {
    const size_t end = header.find(']', at);
    uint64_t value = 0;
    bool in_number = false;
    for (size_t i = at; i < std::min(end, header.size()); ++i) {
      if (header[i] >= '0' && header[i] <= '9') {
        value = value > (UINT64_MAX - 9) / 10 ? UINT64_MAX : value * 10 + static_cast<uint64_t>(header[i] - '0');
        in_number = true;
      } else if (in_number) {
        largest = std::max(largest, value);
        value = 0;
        in_number = false;
      }
    }
    if (in_number) largest = std::max(largest, value);
  }
  return largest;
}

std::string safetensors_from_header(const std::string& header) {
  const uint64_t n = header.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  out += header;
  out.append(static_cast<size_t>(std::min<uint64_t>(largest_offset(header), 4u << 20)), '\0');
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace refinery;
  if (size < 1) return 0;
  const int mode = data[0] % 4;
  const std::vector<std::string> parts =
      fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  std::string path;
  if (mode <= 1) {
    const std::string file = mode == 0 ? parts[0] : safetensors_from_header(parts[0]);
    path = fuzz::as_file(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "checkpoint");
  } else {
    path = fuzz::input_path("hf");
    ::mkdir(path.c_str(), 0700);
    for (const char* name : {"config.json", "model.safetensors", "model.safetensors.index.json", "shard.safetensors"}) {
      std::remove((path + "/" + name).c_str());
    }
    auto part = [&](size_t i) { return i < parts.size() ? parts[i] : std::string(); };
    fuzz::write_file(path + "/config.json", part(0));
    if (mode == 2) {
      fuzz::write_file(path + "/model.safetensors", safetensors_from_header(part(1)));
    } else {
      fuzz::write_file(path + "/model.safetensors.index.json", part(1));
      fuzz::write_file(path + "/shard.safetensors", safetensors_from_header(part(2)));
    }
  }
  fuzz::expect_clean([&] {
    detect_checkpoint_format(path);
    read_checkpoint_header(path);
  });
  return 0;
}
