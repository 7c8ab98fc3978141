// Removes a file, or a folder and everything under it, as
// std::filesystem::remove_all does, without calling it: pip's LibTorch 2.x
// (built with a manylinux toolchain) exports its own copy of remove_all,
// programs linked to it bind to that copy, and there it jumped to address 0
// (seen on torch 2.11 + CUDA 13: pruning a training checkpoint crashed).
// Symbolic links are removed, never followed; a missing path is no error.
#pragma once

#include <cstdint>
#include <string>
#include <system_error>

namespace refinery {

// The number of files and folders removed; on failure `ec` holds the first
// error and whatever could be removed is gone.
std::uintmax_t remove_tree(const std::string& path, std::error_code& ec) noexcept;
// The same, throwing internal_error naming the path.
std::uintmax_t remove_tree(const std::string& path);

}  // namespace refinery
