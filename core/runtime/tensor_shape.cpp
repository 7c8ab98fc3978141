#include "core/runtime/tensor_shape.h"

#include <ATen/core/Tensor.h>

#include <sstream>

namespace refinery {

std::string shape_of(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

}  // namespace refinery
