// Free disk space, checked before large writes (checkpoints, exports) so that
// a full disk is a clear RESOURCE_EXHAUSTED before anything is written, not
// a half-written file.
#pragma once

#include <cstdint>
#include <string>

namespace refinery {

// Bytes available to this process on the file system holding `dir` (the
// nearest existing folder of it).
uint64_t free_disk_bytes(const std::string& dir);
// The size of that file system, in bytes.
uint64_t disk_size_bytes(const std::string& dir);

// Throws resource_exhausted naming `what`, `dir` and both sizes when fewer
// than `bytes` plus a margin (64 MiB) are free there.
void require_free_space(const std::string& dir, uint64_t bytes, const std::string& what);

}  // namespace refinery
