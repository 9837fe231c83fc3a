// The versioned schema of quizflow, applied in order by `quizflow migrate` and at serve start.
#pragma once

#include <vector>

namespace quizflow::egress {

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

// In version order; a migration is never edited once released: add a new one.
const std::vector<Migration>& migrations();

}  // namespace quizflow::egress
