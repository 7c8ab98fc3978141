// Files that appear whole or not at all. A file is written under a fresh,
// unguessable temporary name beside it (created with O_EXCL, so neither a
// concurrent writer nor a planted symlink can be followed), fsynced, renamed
// over the target, and the folder fsynced so the rename survives a crash.
// A full disk (ENOSPC, EDQUOT) is RESOURCE_EXHAUSTED; the temporary file is
// removed on every failure, and the old file, if any, stays as it was.
#pragma once

#include <string>

#include "core/base/error.h"

namespace refinery {

void write_file_atomically(const std::string& path, const std::string& contents);

// A new, empty folder `path`.tmp-XXXXXX beside `path` (mkdtemp), to fill and
// then rename into place. Throws naming `path`.
std::string make_temp_dir_beside(const std::string& path);

// fsync of a folder, so that renames and new files in it are durable.
void fsync_dir(const std::string& dir);

// rename(2) of `from` onto `to` (a file or a folder); a failure is
// write_error naming both, with `otherwise` as its code. Durable once the
// parent folder is fsynced.
void rename_path(const std::string& from, const std::string& to, ErrorCode otherwise = ErrorCode::kInternal);

// The error for a failed write of `path`: RESOURCE_EXHAUSTED for a full disk
// or quota, `otherwise` for anything else: INVALID_ARGUMENT where a caller
// named the path (a folder that is missing or not writable), INTERNAL for the
// server's own files. The message has `path`, `what` and strerror.
Error write_error(const std::string& what, const std::string& path, int err,
                  ErrorCode otherwise = ErrorCode::kInvalidArgument);

}  // namespace refinery
