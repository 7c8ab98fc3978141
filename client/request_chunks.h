// Splitting a long list of items into calls. The server caps items per call
// (--max-request-items) and message size (--max-message-mb); the client
// stays under both and names the slice of items a failed call carried.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace refinery::client {

// Requests stay under this many bytes of payload, well below the server's
// default 64 MiB message limit.
constexpr size_t kMaxRequestBytes = size_t(32) << 20;

struct Chunk {
  size_t begin = 0, end = 0;  // items [begin, end)
};

// Consecutive ranges of at most `max_items` items (0 = no limit) and about
// `max_bytes` bytes (an item larger than that still gets a call of its own).
inline std::vector<Chunk> plan_chunks(const std::vector<size_t>& item_bytes, size_t max_items,
                                      size_t max_bytes = kMaxRequestBytes) {
  std::vector<Chunk> chunks;
  Chunk current;
  size_t bytes = 0;
  for (size_t i = 0; i < item_bytes.size(); ++i) {
    const size_t items = i - current.begin;
    if (items > 0 && ((max_items > 0 && items >= max_items) || bytes + item_bytes[i] > max_bytes)) {
      current.end = i;
      chunks.push_back(current);
      current.begin = i;
      bytes = 0;
    }
    bytes += item_bytes[i];
  }
  current.end = item_bytes.size();
  if (current.end > current.begin) chunks.push_back(current);
  return chunks;
}

// "items 64..127 of 200" for errors, or "" when one call carries everything.
inline std::string chunk_context(const Chunk& c, size_t total) {
  if (c.begin == 0 && c.end == total) return "";
  return "items " + std::to_string(c.begin) + ".." + std::to_string(c.end - 1) + " of " + std::to_string(total);
}

}  // namespace refinery::client
