#include "server/embedding/wait_budget.h"

namespace refinery {

void WaitBudget::observe_pass(double ms) {
  sum_ = sum_ * decay_ + ms;
  weight_ = weight_ * decay_ + 1;
}

}  // namespace refinery
