#include "core/index/index_log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/base/error.h"
#include "core/index/durable_file.h"

namespace refinery {
namespace {

using index_internal::Checksum;
using index_internal::index_write_error;

constexpr char kSegmentMagic[8] = {'R', 'F', 'Y', 'L', 'O', 'G', '0', '1'};
constexpr size_t kSegmentHeader = 16;  // magic + u64 segment number
constexpr uint32_t kRecordMagic = 0x52574C31;  // "1LWR" in memory on little-endian
constexpr size_t kRecordHeader = 16;           // magic, payload bytes, checksum
constexpr const char* kSuffix = ".log";
constexpr size_t kDigits = 20;

void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }

void put_str(std::string& out, const std::string& s) {
  put_u32(out, static_cast<uint32_t>(s.size()));
  out += s;
}

// Parses "<20 digits>.log"; false for anything else.
bool segment_number(const std::string& name, uint64_t* n) {
  if (name.size() != kDigits + std::strlen(kSuffix) || name.compare(kDigits, std::string::npos, kSuffix) != 0) {
    return false;
  }
  uint64_t v = 0;
  for (size_t i = 0; i < kDigits; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  *n = v;
  return true;
}

// A read-only view of a whole file (empty files map to nothing).
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw invalid_argument(path + ": cannot read: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      ::close(fd);
      throw invalid_argument(path + ": cannot read: " + std::strerror(err));
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
      if (p == MAP_FAILED) {
        int err = errno;
        ::close(fd);
        throw invalid_argument(path + ": cannot map: " + std::strerror(err));
      }
      data_ = static_cast<const char*>(p);
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
};

// Reads one payload; throws a plain message (the caller adds file and offset).
class PayloadReader {
 public:
  PayloadReader(const char* p, size_t n) : p_(p), end_(p + n) {}
  uint8_t u8() {
    need(1);
    return static_cast<uint8_t>(*p_++);
  }
  uint32_t u32() {
    need(4);
    uint32_t v;
    std::memcpy(&v, p_, 4);
    p_ += 4;
    return v;
  }
  std::string str() {
    const uint32_t len = u32();
    need(len);
    std::string s(p_, len);
    p_ += len;
    return s;
  }
  void floats(std::vector<float>& out, size_t count) {
    if (count > static_cast<size_t>(end_ - p_) / sizeof(float)) throw std::runtime_error("the payload is cut short");
    out.resize(count);
    std::memcpy(out.data(), p_, count * sizeof(float));
    p_ += count * sizeof(float);
  }
  bool done() const { return p_ == end_; }

 private:
  void need(size_t n) const {
    if (static_cast<size_t>(end_ - p_) < n) throw std::runtime_error("the payload is cut short");
  }
  const char* p_;
  const char* end_;
};

IndexLogRecord decode(const char* payload, size_t n) {
  PayloadReader r(payload, n);
  IndexLogRecord rec;
  const uint8_t op = r.u8();
  if (op == static_cast<uint8_t>(IndexLogRecord::Op::kAdd)) {
    rec.op = IndexLogRecord::Op::kAdd;
    rec.upsert = r.u8() != 0;
    const uint32_t count = r.u32();
    rec.dim = static_cast<int>(r.u32());
    if (count > n) throw std::runtime_error("the item count is impossible");
    rec.ids.reserve(count);
    for (uint32_t i = 0; i < count; ++i) rec.ids.push_back(r.str());
    const uint32_t with_metadata = r.u8();
    if (with_metadata) {
      rec.metadata.reserve(count);
      for (uint32_t i = 0; i < count; ++i) rec.metadata.push_back(r.str());
    }
    r.floats(rec.vectors, static_cast<size_t>(count) * static_cast<size_t>(rec.dim));
  } else if (op == static_cast<uint8_t>(IndexLogRecord::Op::kRemove)) {
    rec.op = IndexLogRecord::Op::kRemove;
    const uint32_t count = r.u32();
    if (count > n) throw std::runtime_error("the item count is impossible");
    rec.ids.reserve(count);
    for (uint32_t i = 0; i < count; ++i) rec.ids.push_back(r.str());
  } else {
    throw std::runtime_error("unknown operation " + std::to_string(op));
  }
  if (!r.done()) throw std::runtime_error("trailing bytes after the record");
  return rec;
}

void fsync_directory(const std::string& dir) { refinery::fsync_dir(dir); }

}  // namespace

std::string IndexLog::segment_path(uint64_t n) const {
  char name[32];
  std::snprintf(name, sizeof name, "%020llu%s", static_cast<unsigned long long>(n), kSuffix);
  return dir_ + "/" + name;
}

IndexLog::IndexLog(std::string dir, uint64_t first_segment, const Apply& apply) : dir_(std::move(dir)) {
  {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) throw internal_error("cannot create the index log folder " + dir_ + ": " + ec.message());
  }
  std::vector<uint64_t> found;
  {
    DIR* d = ::opendir(dir_.c_str());
    if (!d) throw internal_error("cannot list " + dir_ + ": " + std::strerror(errno));
    while (dirent* e = ::readdir(d)) {
      uint64_t n;
      if (segment_number(e->d_name, &n)) found.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(found.begin(), found.end());

  bool dropped = false;
  std::vector<uint64_t> live;
  for (uint64_t n : found) {
    if (n < first_segment) {
      if (::unlink(segment_path(n).c_str()) != 0 && errno != ENOENT) {
        throw index_write_error("cannot delete", segment_path(n), errno);
      }
      dropped = true;
    } else {
      live.push_back(n);
    }
  }
  if (!live.empty() && live.front() != first_segment) {
    throw invalid_argument(dir_ + ": log segment " + std::to_string(first_segment) +
                           " is missing (the snapshot needs the changes from it on)");
  }
  for (size_t i = 1; i < live.size(); ++i) {
    if (live[i] != live[i - 1] + 1) {
      throw invalid_argument(dir_ + ": log segment " + std::to_string(live[i - 1] + 1) + " is missing");
    }
  }

  for (size_t i = 0; i < live.size(); ++i) {
    const uint64_t n = live[i];
    const bool newest = i + 1 == live.size();
    const std::string path = segment_path(n);
    size_t keep = 0;  // bytes of intact data; less than the file only for a torn tail
    uint64_t records = 0;
    {
      MappedFile file(path);
      const char* p = file.data();
      const size_t size = file.size();
      uint64_t number = 0;
      if (size >= kSegmentHeader) std::memcpy(&number, p + 8, 8);
      if (size < kSegmentHeader || std::memcmp(p, kSegmentMagic, 8) != 0 || number != n) {
        if (!(newest && size < kSegmentHeader)) {
          throw invalid_argument(path + ": not a refinery index log segment (bad header)");
        }
        // Created by a start or rotation that crashed before its header was
        // on disk: it never held a record.
      } else {
        size_t pos = kSegmentHeader;
        while (pos < size) {
          const std::string where = path + ": record at byte " + std::to_string(pos);
          bool torn = false;
          uint32_t magic = 0, len = 0;
          uint64_t sum = 0;
          if (size - pos < kRecordHeader) {
            torn = true;
          } else {
            std::memcpy(&magic, p + pos, 4);
            std::memcpy(&len, p + pos + 4, 4);
            std::memcpy(&sum, p + pos + 8, 8);
            if (magic != kRecordMagic) {
              if (!newest) throw invalid_argument(where + " is corrupt (bad magic)");
              torn = true;  // checked below: only acceptable as the file's end
            } else if (len > size - pos - kRecordHeader) {
              torn = true;
            } else {
              Checksum c;
              c.update(p + pos + kRecordHeader, len);
              if (c.digest() != sum) {
                if (!newest || pos + kRecordHeader + len != size) {
                  throw invalid_argument(where + " is corrupt (checksum mismatch)");
                }
                torn = true;
              }
            }
          }
          if (torn) {
            if (!newest) throw invalid_argument(where + " is cut short");
            if (magic != kRecordMagic && size - pos >= kRecordHeader) {
              // Garbage that is not a torn header: only zeros may follow
              // (a crash can leave allocated, unwritten blocks).
              for (size_t j = pos; j < size; ++j) {
                if (p[j] != 0) throw invalid_argument(where + " is corrupt (bad magic)");
              }
            }
            break;
          }
          IndexLogRecord rec;
          try {
            rec = decode(p + pos + kRecordHeader, len);
          } catch (const std::exception& e) {
            throw invalid_argument(where + " is corrupt: " + e.what());
          }
          try {
            apply(rec);
          } catch (const Error& e) {
            throw invalid_argument(where + " cannot be applied: " + e.what());
          }
          ++records;
          pos += kRecordHeader + len;
        }
        keep = pos;
      }
      if (keep != file.size() || file.size() < kSegmentHeader) {
        // Cut the torn tail (or delete the headerless segment) so the next
        // replay does not meet it in the middle of the log.
        if (file.size() < kSegmentHeader) {
          if (::unlink(path.c_str()) != 0) throw index_write_error("cannot delete", path, errno);
          fsync_directory(dir_);
          continue;
        }
        repair_ = "cut " + std::to_string(file.size() - keep) + " bytes of an unfinished write off " + path +
                  " at byte " + std::to_string(keep);
        if (::truncate(path.c_str(), static_cast<off_t>(keep)) != 0) {
          throw index_write_error("cannot cut the torn end off", path, errno);
        }
        int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ::fdatasync(fd) != 0) {
          int err = errno;
          if (fd >= 0) ::close(fd);
          throw index_write_error("cannot fsync", path, err);
        }
        ::close(fd);
      } else {
        keep = file.size();
      }
    }
    segments_[n] = {keep, records};
    appended_ += records;
  }
  synced_ = appended_;
  if (dropped) fsync_directory(dir_);

  std::lock_guard<std::mutex> lock(mu_);
  open_segment(segments_.empty() ? first_segment : segments_.rbegin()->first + 1);
}

IndexLog::~IndexLog() {
  if (fd_ >= 0) ::close(fd_);
}

void IndexLog::open_segment(uint64_t n) {
  const std::string path = segment_path(n);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw index_write_error("cannot create", path, errno);
  char header[kSegmentHeader];
  std::memcpy(header, kSegmentMagic, 8);
  std::memcpy(header + 8, &n, 8);
  if (::pwrite(fd, header, kSegmentHeader, 0) != static_cast<ssize_t>(kSegmentHeader) || ::fdatasync(fd) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    throw index_write_error("cannot write", path, err);
  }
  fsync_directory(dir_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  segment_ = n;
  segments_[n] = {kSegmentHeader, 0};
}

void IndexLog::throw_if_failed() const {
  if (!failure_.empty()) throw internal_error(failure_ + "; restart the server to replay what reached the disk");
}

uint64_t IndexLog::append_add(const std::vector<std::string>& ids, const float* vectors, size_t n, int dim,
                              const std::vector<std::string>& metadata, bool upsert) {
  std::string payload;
  size_t bytes = 16 + n * static_cast<size_t>(dim) * sizeof(float);
  for (size_t i = 0; i < n; ++i) bytes += 8 + ids[i].size() + (metadata.empty() ? 0 : metadata[i].size());
  payload.reserve(bytes);
  payload.push_back(static_cast<char>(IndexLogRecord::Op::kAdd));
  payload.push_back(upsert ? 1 : 0);
  put_u32(payload, static_cast<uint32_t>(n));
  put_u32(payload, static_cast<uint32_t>(dim));
  for (size_t i = 0; i < n; ++i) put_str(payload, ids[i]);
  payload.push_back(metadata.empty() ? 0 : 1);
  if (!metadata.empty()) {
    for (size_t i = 0; i < n; ++i) put_str(payload, metadata[i]);
  }
  payload.append(reinterpret_cast<const char*>(vectors), n * static_cast<size_t>(dim) * sizeof(float));
  return append(payload);
}

uint64_t IndexLog::append_remove(const std::vector<std::string>& ids) {
  std::string payload;
  payload.push_back(static_cast<char>(IndexLogRecord::Op::kRemove));
  put_u32(payload, static_cast<uint32_t>(ids.size()));
  for (const auto& id : ids) put_str(payload, id);
  return append(payload);
}

uint64_t IndexLog::append(const std::string& payload) {
  if (payload.size() > UINT32_MAX) {
    throw invalid_argument("one change of " + std::to_string(payload.size()) +
                           " bytes is too large for the index log (at most 4 GiB); add fewer items per call");
  }
  char header[kRecordHeader];
  const uint32_t magic = kRecordMagic, len = static_cast<uint32_t>(payload.size());
  Checksum c;
  c.update(payload.data(), payload.size());
  const uint64_t sum = c.digest();
  std::memcpy(header, &magic, 4);
  std::memcpy(header + 4, &len, 4);
  std::memcpy(header + 8, &sum, 8);
  const size_t total = kRecordHeader + payload.size();

  std::lock_guard<std::mutex> lock(mu_);
  throw_if_failed();
  Segment& seg = segments_[segment_];
  const std::string path = segment_path(segment_);
  // Header and payload in one write, without copying them together.
  size_t done = 0;
  while (done < total) {
    iovec parts[2];
    int count = 0;
    if (done < kRecordHeader) parts[count++] = {header + done, kRecordHeader - done};
    const size_t from = done > kRecordHeader ? done - kRecordHeader : 0;
    parts[count++] = {const_cast<char*>(payload.data()) + from, payload.size() - from};
    ssize_t w = ::pwritev(fd_, parts, count, static_cast<off_t>(seg.bytes + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = w < 0 ? errno : EIO;
      // Leave nothing half-written behind: a later record after a torn one
      // would make the log unreadable.
      if (done > 0 && ::ftruncate(fd_, static_cast<off_t>(seg.bytes)) != 0) {
        failure_ = "cannot cut a failed write off " + path + ": " + std::strerror(errno);
      }
      throw index_write_error("cannot write", path, err);
    }
    done += static_cast<size_t>(w);
  }
  seg.bytes += total;
  ++seg.records;
  return ++appended_;
}

void IndexLog::sync(uint64_t seq) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    throw_if_failed();
    if (synced_ >= seq) return;
    if (syncing_) {
      synced_cv_.wait(lock);
      continue;
    }
    syncing_ = true;
    const uint64_t target = appended_;
    const int fd = fd_;
    const std::string path = segment_path(segment_);
    lock.unlock();
    const int rc = ::fdatasync(fd);
    const int err = errno;
    lock.lock();
    syncing_ = false;
    if (rc != 0) {
      failure_ = "cannot fsync " + path + ": " + std::strerror(err);
    } else {
      synced_ = std::max(synced_, target);
    }
    synced_cv_.notify_all();
  }
}

uint64_t IndexLog::rotate() {
  std::unique_lock<std::mutex> lock(mu_);
  synced_cv_.wait(lock, [&] { return !syncing_; });
  throw_if_failed();
  if (::fdatasync(fd_) != 0) {
    failure_ = "cannot fsync " + segment_path(segment_) + ": " + std::strerror(errno);
    synced_cv_.notify_all();
    throw_if_failed();
  }
  synced_ = appended_;
  synced_cv_.notify_all();
  open_segment(segment_ + 1);
  return segment_;
}

void IndexLog::drop_before(uint64_t segment) {
  std::lock_guard<std::mutex> lock(mu_);
  bool any = false;
  for (auto it = segments_.begin(); it != segments_.end() && it->first < segment && it->first != segment_;) {
    if (::unlink(segment_path(it->first).c_str()) != 0 && errno != ENOENT) {
      throw index_write_error("cannot delete", segment_path(it->first), errno);
    }
    it = segments_.erase(it);
    any = true;
  }
  if (any) fsync_directory(dir_);
}

IndexLogStats IndexLog::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  IndexLogStats s;
  s.first_segment = segments_.empty() ? segment_ : segments_.begin()->first;
  s.segment = segment_;
  for (const auto& [n, seg] : segments_) {
    s.bytes += seg.bytes;
    s.records += seg.records;
  }
  return s;
}

}  // namespace refinery
