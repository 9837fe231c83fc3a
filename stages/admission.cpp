#include "stages/admission.h"

#include <algorithm>

namespace quizflow::stages {

int64_t admission_estimate(size_t body_bytes) {
  return std::max<int64_t>(1, static_cast<int64_t>(body_bytes / 64));
}

bool admits(int64_t in_flight, int64_t estimate, int64_t max_in_flight) {
  return in_flight <= 0 || in_flight + estimate <= max_in_flight;
}

}  // namespace quizflow::stages
