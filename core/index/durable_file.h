// Crash-safe file I/O for saving and loading an index: a checksum, a writer
// that makes one file durable, and the file and directory operations the
// save / recover protocol is built from (see vector_index_storage.cpp).
// Failures are refinery::Errors naming the path.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/base/atomic_file.h"
#include "core/base/error.h"

namespace refinery::index_internal {

// ---------------------------------------------------------------- checksums

// A fast 64-bit checksum (xxHash64-style rounds over 8-byte words) that
// catches truncation and bit rot; not cryptographic. Independent of how the
// bytes are split across update() calls.
class Checksum {
 public:
  void update(const void* data, size_t n) {
    auto p = static_cast<const uint8_t*>(data);
    total_ += n;
    while (n > 0 && pending_len_ > 0) {
      pending_[pending_len_++] = *p++;
      --n;
      if (pending_len_ == 8) {
        mix(load(pending_));
        pending_len_ = 0;
      }
    }
    for (; n >= 8; p += 8, n -= 8) mix(load(p));
    while (n > 0) {
      pending_[pending_len_++] = *p++;
      --n;
    }
  }

  uint64_t digest() const {
    uint64_t h = h_;
    for (size_t i = 0; i < pending_len_; ++i) h = rotl(h ^ (pending_[i] * kP5), 11) * kP1;
    h ^= total_;
    h ^= h >> 33;
    h *= kP2;
    h ^= h >> 29;
    h *= kP3;
    h ^= h >> 32;
    return h;
  }

  static std::string hex(uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
  }

 private:
  static constexpr uint64_t kP1 = 0x9E3779B185EBCA87ULL, kP2 = 0xC2B2AE3D27D4EB4FULL,
                            kP3 = 0x165667B19E3779F9ULL, kP5 = 0x27D4EB2F165667C5ULL;
  static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
  static uint64_t load(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
  }
  void mix(uint64_t w) { h_ = rotl(h_ + w * kP2, 31) * kP1; }

  uint64_t h_ = kP5;
  uint64_t total_ = 0;
  uint8_t pending_[8] = {};
  size_t pending_len_ = 0;
};

// ---------------------------------------------------------------- file I/O

// An Error for a failed write-side call on the index's own files:
// resource_exhausted when the disk or quota is full, else internal_error.
inline Error index_write_error(const std::string& what, const std::string& path, int err) {
  return refinery::write_error(what, path, err, ErrorCode::kInternal);
}

// Writes one file durably: buffered, checksummed, fsync'd by finish().
class DurableWriter {
 public:
  explicit DurableWriter(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw index_write_error("cannot create", path_, errno);
    buffer_.reserve(kBufferSize);
  }
  ~DurableWriter() {
    if (fd_ >= 0) ::close(fd_);
  }
  DurableWriter(const DurableWriter&) = delete;
  DurableWriter& operator=(const DurableWriter&) = delete;

  void write(const void* data, size_t n) {
    checksum_.update(data, n);
    bytes_ += n;
    if (buffer_.size() + n <= kBufferSize) {
      auto p = static_cast<const char*>(data);
      buffer_.insert(buffer_.end(), p, p + n);
      return;
    }
    flush();
    if (n >= kBufferSize) {
      write_all(data, n);
    } else {
      auto p = static_cast<const char*>(data);
      buffer_.insert(buffer_.end(), p, p + n);
    }
  }

  void finish() {
    flush();
    if (::fsync(fd_) != 0) throw index_write_error("cannot fsync", path_, errno);
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw index_write_error("cannot close", path_, errno);
  }

  uint64_t bytes() const { return bytes_; }
  uint64_t checksum() const { return checksum_.digest(); }

 private:
  static constexpr size_t kBufferSize = size_t{1} << 20;

  void flush() {
    if (!buffer_.empty()) write_all(buffer_.data(), buffer_.size());
    buffer_.clear();
  }
  void write_all(const void* data, size_t n) {
    auto p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw index_write_error("cannot write", path_, errno);
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  }

  std::string path_;
  int fd_ = -1;
  std::vector<char> buffer_;
  Checksum checksum_;
  uint64_t bytes_ = 0;
};

using refinery::fsync_dir;    // core/base/atomic_file.h
using refinery::rename_path;  // core/base/atomic_file.h (INTERNAL unless the disk is full)
// The directory holding `dir` ("." when it has none).
std::string parent_of(const std::string& dir);
bool exists(const std::string& path);       // false also when it cannot be checked

// The size of `path` and a check that it is what the manifest says.
void check_file(const std::string& path, uint64_t expected_bytes);

// Reads exactly `n` bytes of `path` into `dst`, returning their checksum.
uint64_t read_exact(const std::string& path, void* dst, uint64_t n);

// Checksums `path` without keeping it in memory.
uint64_t checksum_file(const std::string& path, uint64_t n);

// invalid_argument naming `path` unless `actual` is the manifest's checksum.
void check_checksum(const std::string& path, uint64_t actual, const std::string& expected_hex);

}  // namespace refinery::index_internal
