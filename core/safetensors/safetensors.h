// The .safetensors format: an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}},
// then the raw little-endian tensor bytes. Torch-free on purpose: the
// tokenizer and image tests read reference data through it too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace refinery {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "F32", "F16", ... as in the format
DType parse_dtype(const std::string& name);  // throws on unknown names

// A tensor inside a mapped file. `data` stays valid while the file that
// produced it is alive.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
  // Copies out as float32 (converting F16/BF16/F64/integers); for tests and
  // small tensors.
  std::vector<float> to_floats() const;
  std::vector<int32_t> to_int32s() const;
};

class SafetensorsFile {
 public:
  // Memory-maps `path` and validates the header: its length, the dtypes,
  // offsets within the data section and not overlapping, and that shape x
  // dtype size equals the byte span. Throws refinery::Error naming the file
  // and the offending tensor.
  // `for_loading`: for a caller whose tensors keep using the mapping (a
  // model's weights): every page is mapped at once (MAP_POPULATE: one fault
  // per page otherwise) and copy-on-write (writes, e.g. training the loaded
  // weights, go to private copies of the pages, never to the file; without
  // it the mapping is read-only). Header-only readers leave it off, so the
  // data is never read from disk.
  static SafetensorsFile open(const std::string& path, bool for_loading = false);

  const std::string& path() const { return path_; }
  bool contains(const std::string& name) const;
  const TensorView& at(const std::string& name) const;  // NOT_FOUND names key and file
  // Tensor names in the order of their data offsets.
  const std::vector<std::string>& names() const { return names_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> mapping_;
  std::map<std::string, TensorView> tensors_;
  std::vector<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

// Collects tensors and writes them in one go, atomically: a temporary file in
// the same directory, fsync, then rename, so a crash never leaves a partial
// file where a good one was.
class SafetensorsWriter {
 public:
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
           size_t nbytes);
  void add_float32(const std::string& name, std::vector<int64_t> shape, const float* data);
  void add_int32(const std::string& name, std::vector<int64_t> shape, const int32_t* data);
  void set_metadata(const std::string& key, const std::string& value);
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace refinery
