#include "core/safetensors/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/base/atomic_file.h"
#include "core/base/error.h"

namespace refinery {
namespace {

// A header larger than this is not a real checkpoint (the format's own
// implementation uses the same 100 MB cap).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float bf16_to_float(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF64: case DType::kI64: return 8;
    case DType::kF32: case DType::kI32: return 4;
    case DType::kF16: case DType::kBF16: case DType::kI16: return 2;
    case DType::kI8: case DType::kU8: case DType::kBool: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF64: return "F64";
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kI64: return "I64";
    case DType::kI32: return "I32";
    case DType::kI16: return "I16";
    case DType::kI8: return "I8";
    case DType::kU8: return "U8";
    case DType::kBool: return "BOOL";
  }
  return "?";
}

DType parse_dtype(const std::string& name) {
  static const std::pair<const char*, DType> kNames[] = {
      {"F64", DType::kF64}, {"F32", DType::kF32}, {"F16", DType::kF16}, {"BF16", DType::kBF16},
      {"I64", DType::kI64}, {"I32", DType::kI32}, {"I16", DType::kI16}, {"I8", DType::kI8},
      {"U8", DType::kU8},   {"BOOL", DType::kBool}};
  for (const auto& [n, d] : kNames) {
    if (name == n) return d;
  }
  throw invalid_argument("unsupported dtype '" + name + "'");
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<float> TensorView::to_floats() const {
  const int64_t n = numel();
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* p = data + i * dtype_size(dtype);
    switch (dtype) {
      case DType::kF64: out[i] = static_cast<float>(load<double>(p)); break;
      case DType::kF32: out[i] = load<float>(p); break;
      case DType::kF16: out[i] = half_to_float(load<uint16_t>(p)); break;
      case DType::kBF16: out[i] = bf16_to_float(load<uint16_t>(p)); break;
      case DType::kI64: out[i] = static_cast<float>(load<int64_t>(p)); break;
      case DType::kI32: out[i] = static_cast<float>(load<int32_t>(p)); break;
      case DType::kI16: out[i] = static_cast<float>(load<int16_t>(p)); break;
      case DType::kI8: out[i] = static_cast<float>(load<int8_t>(p)); break;
      case DType::kU8: case DType::kBool: out[i] = static_cast<float>(*p); break;
    }
  }
  return out;
}

std::vector<int32_t> TensorView::to_int32s() const {
  const int64_t n = numel();
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* p = data + i * dtype_size(dtype);
    switch (dtype) {
      case DType::kI64: out[i] = static_cast<int32_t>(load<int64_t>(p)); break;
      case DType::kI32: out[i] = load<int32_t>(p); break;
      case DType::kI16: out[i] = load<int16_t>(p); break;
      case DType::kI8: out[i] = load<int8_t>(p); break;
      case DType::kU8: case DType::kBool: out[i] = *p; break;
      default:
        throw invalid_argument("tensor '" + name + "' has dtype " + dtype_name(dtype) +
                               ", expected an integer dtype");
    }
  }
  return out;
}

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr != nullptr && addr != MAP_FAILED) munmap(addr, size);
  }
};

SafetensorsFile SafetensorsFile::open(const std::string& path, bool for_loading) {
  auto bad = [&](const std::string& why) { return invalid_argument(path + ": not a valid safetensors file: " + why); };

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) throw not_found(path + ": no such file");
    throw invalid_argument(path + ": cannot open: " + errno_text());
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw invalid_argument(path + ": not a regular file");
  }
  SafetensorsFile file;
  file.path_ = path;
  file.mapping_ = std::make_shared<Mapping>();
  file.mapping_->size = static_cast<size_t>(st.st_size);
  if (st.st_size > 0) {
    file.mapping_->addr = for_loading ? mmap(nullptr, file.mapping_->size, PROT_READ | PROT_WRITE,
                                             MAP_PRIVATE | MAP_POPULATE, fd, 0)
                                      : mmap(nullptr, file.mapping_->size, PROT_READ, MAP_PRIVATE, fd, 0);
  }
  ::close(fd);
  if (file.mapping_->addr == MAP_FAILED) throw invalid_argument(path + ": cannot map: " + errno_text());

  const size_t file_size = file.mapping_->size;
  const auto* base = static_cast<const uint8_t*>(file.mapping_->addr);
  if (file_size < 8) throw bad("file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");
  const uint64_t header_len = load<uint64_t>(base);
  if (header_len > kMaxHeaderBytes) throw bad("header length " + std::to_string(header_len) + " is implausibly large");
  if (header_len > file_size - 8) {
    throw bad("header length " + std::to_string(header_len) + " runs past the end of the file (" +
              std::to_string(file_size) + " bytes): truncated?");
  }
  const char* header_begin = reinterpret_cast<const char*>(base + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("header is not valid JSON: ") + without_quoted_input(e.what()));
  }
  if (!header.is_object()) throw bad("header is not a JSON object");

  const uint8_t* data_begin = base + 8 + header_len;
  const uint64_t data_size = file_size - 8 - header_len;
  std::vector<std::pair<uint64_t, uint64_t>> spans;  // [begin, end) to check overlaps

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) throw bad("__metadata__ is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) throw bad("__metadata__ value for '" + m.key() + "' is not a string");
        file.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad_tensor = [&](const std::string& why) { return bad("tensor '" + name + "': " + why); };
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets")) {
      throw bad_tensor("entry must have dtype, shape and data_offsets");
    }
    TensorView view;
    view.name = name;
    if (!entry["dtype"].is_string()) throw bad_tensor("dtype is not a string");
    try {
      view.dtype = parse_dtype(entry["dtype"].get<std::string>());
    } catch (const Error& e) {
      throw bad_tensor(e.what());
    }
    const auto& shape = entry["shape"];
    if (!shape.is_array()) throw bad_tensor("shape is not an array");
    // Every dimension and the product of the non-zero ones must fit the
    // int64 shapes LibTorch takes, with room for 8-byte elements: a zero
    // dimension must not hide a huge one (a shape [0, 2^64-1] once became a
    // negative size).
    const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / 8;
    uint64_t numel = 1, nonzero_product = 1;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) throw bad_tensor("shape has a non-integer or negative dimension");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > limit || (dim != 0 && nonzero_product > limit / dim)) throw bad_tensor("shape overflows");
      if (dim != 0) nonzero_product *= dim;
      numel *= dim;
      view.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
      throw bad_tensor("data_offsets must be two non-negative integers");
    }
    const uint64_t begin = offsets[0].get<uint64_t>();
    const uint64_t end = offsets[1].get<uint64_t>();
    if (begin > end) throw bad_tensor("data_offsets are reversed");
    if (end > data_size) {
      throw bad_tensor("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                       ") run past the end of the data (" + std::to_string(data_size) + " bytes): truncated?");
    }
    const uint64_t expected = numel * dtype_size(view.dtype);
    if (end - begin != expected) {
      throw bad_tensor("holds " + std::to_string(end - begin) + " bytes but its shape and dtype need " +
                       std::to_string(expected));
    }
    view.data = data_begin + begin;
    view.nbytes = static_cast<size_t>(expected);
    spans.emplace_back(begin, end);
    file.tensors_.emplace(name, std::move(view));
  }

  // Offsets must not overlap (empty tensors may share a position).
  std::vector<std::pair<std::pair<uint64_t, uint64_t>, std::string>> ordered;
  for (const auto& [name, view] : file.tensors_) {
    const uint64_t b = static_cast<uint64_t>(view.data - data_begin);
    ordered.push_back({{b, b + view.nbytes}, name});
  }
  std::sort(ordered.begin(), ordered.end());
  for (size_t i = 1; i < ordered.size(); ++i) {
    if (ordered[i].first.first < ordered[i - 1].first.second) {
      throw bad("tensors '" + ordered[i - 1].second + "' and '" + ordered[i].second + "' overlap");
    }
  }
  for (const auto& o : ordered) file.names_.push_back(o.second);
  return file;
}

bool SafetensorsFile::contains(const std::string& name) const { return tensors_.count(name) != 0; }

const TensorView& SafetensorsFile::at(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw not_found(path_ + ": no tensor named '" + name + "'");
  return it->second;
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
                            size_t nbytes) {
  if (name == "__metadata__") throw invalid_argument("'__metadata__' is reserved and cannot name a tensor");
  for (const auto& e : entries_) {
    if (e.name == name) throw invalid_argument("tensor '" + name + "' added twice");
  }
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) throw invalid_argument("tensor '" + name + "' has a negative dimension");
    numel *= d;
  }
  if (static_cast<size_t>(numel) * dtype_size(dtype) != nbytes) {
    throw invalid_argument("tensor '" + name + "': " + std::to_string(nbytes) + " bytes do not match its shape and dtype");
  }
  Entry e{name, dtype, std::move(shape), {}};
  const auto* p = static_cast<const uint8_t*>(data);
  e.bytes.assign(p, p + nbytes);
  entries_.push_back(std::move(e));
}

void SafetensorsWriter::add_float32(const std::string& name, std::vector<int64_t> shape, const float* data) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  add(name, DType::kF32, std::move(shape), data, static_cast<size_t>(n) * sizeof(float));
}

void SafetensorsWriter::add_int32(const std::string& name, std::vector<int64_t> shape, const int32_t* data) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  add(name, DType::kI32, std::move(shape), data, static_cast<size_t>(n) * sizeof(int32_t));
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

void SafetensorsWriter::write(const std::string& path) const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const auto& e : entries_) {
    header[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  std::string header_text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned (as the
  // reference writer does); mmap readers can then use it in place.
  while ((8 + header_text.size()) % 8 != 0) header_text.push_back(' ');
  std::string out;
  out.reserve(8 + header_text.size() + offset);
  const uint64_t len = header_text.size();
  out.append(reinterpret_cast<const char*>(&len), 8);
  out += header_text;
  for (const auto& e : entries_) out.append(reinterpret_cast<const char*>(e.bytes.data()), e.bytes.size());
  write_file_atomically(path, out);
}

}  // namespace refinery
