// A tensor's shape as error messages show it: "[8, 512]".
#pragma once

#include <string>

namespace at {
class Tensor;
}

namespace refinery {

std::string shape_of(const at::Tensor& t);

}  // namespace refinery
