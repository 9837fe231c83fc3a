// Quiz definitions (spec §4) and the read-mostly catalog the validate stage checks against.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/mutex.h"

namespace quizflow {

struct Question {
  int32_t question_id = 0;
  int32_t option_count = 0;
  int32_t correct_option = 0;
  int64_t points = 1000;
  int64_t time_limit_ms = 20000;
  bool operator==(const Question&) const = default;
};

struct RewardTier {
  int64_t rank_from = 0;
  int64_t rank_to = 0;
  std::string reward;
  bool operator==(const RewardTier&) const = default;
};

struct QuizDef {
  int64_t quiz_id = 0;
  std::string title;
  int64_t opens_at_ms = 0;
  int64_t closes_at_ms = 0;
  std::vector<Question> questions;  // sorted by question_id
  std::vector<RewardTier> rewards;  // sorted by rank_from
  bool operator==(const QuizDef&) const = default;

  const Question* find_question(int32_t question_id) const;
};

// Result of decoding a quiz definition: the quiz, or an error with code/message/field.
struct QuizDecodeResult {
  std::optional<QuizDef> quiz;
  std::string code;  // "malformed_json" or "schema"
  std::string message;
  std::string field;
};

// Decodes a POST /v1/quizzes body with the rules of spec §4 (unknown fields rejected).
QuizDecodeResult decode_quiz(std::string_view json);

// Canonical JSON of a quiz definition (timestamps as RFC 3339 UTC with ms).
std::string encode_quiz(const QuizDef& q);

enum class QuizState : uint8_t { open, closed, finalized };

// The state a quiz shows: `stored` (finalized, closed by request, else open) with the clock:
// an open quiz past its closes_at is closed.
QuizState visible_state(QuizState stored, const QuizDef& q, int64_t now_ms);
const char* to_string(QuizState s);
// The state named `s` ("open", "closed", "finalized"); nullopt for any other text.
std::optional<QuizState> quiz_state_of(std::string_view s);

// Immutable catalog snapshot; replaced as a whole when a quiz is added, closed or finalized.
// Thread-safe to read. It holds the definitions of live (not finalized) quizzes only; of a
// finalized quiz it keeps the id (so that answers get `quiz_finalized`), and reads of it go to
// PostgreSQL: memory grows with live quizzes, not with history.
struct CatalogSnapshot {
  std::map<int64_t, std::shared_ptr<const QuizDef>> quizzes;  // live quizzes
  std::map<int64_t, QuizState> states;  // live quizzes closed by request (absent: by the clock)
  std::shared_ptr<const std::vector<int64_t>> finalized =  // sorted ids
      std::make_shared<const std::vector<int64_t>>();
  const QuizDef* find(int64_t quiz_id) const;  // a live quiz, or nullptr
  bool is_finalized(int64_t quiz_id) const;
  // open/closed by the clock and close requests; finalized once finalization ran.
  QuizState state_of(const QuizDef& q, int64_t now_ms) const;
};

// A stored quiz and its state.
struct QuizRecord {
  QuizDef def;
  QuizState state = QuizState::open;  // as stored: `closed` only when a close was requested
};

// Holder of the current snapshot. Readers take a shared_ptr copy (one short lock per chunk, not
// per event); writers copy-on-write.
class Catalog {
 public:
  std::shared_ptr<const CatalogSnapshot> snapshot() const QF_EXCLUDES(mu_);
  void put(const QuizDef& quiz) QF_EXCLUDES(mu_);
  // `closed`: a close was requested; `finalized`: the definition leaves memory, the id stays.
  void set_state(int64_t quiz_id, QuizState s) QF_EXCLUDES(mu_);
  // Live quizzes (with their stored state) and the ids of finalized ones.
  void replace_all(std::vector<QuizRecord> live, std::vector<int64_t> finalized) QF_EXCLUDES(mu_);

 private:
  mutable Mutex mu_;
  std::shared_ptr<const CatalogSnapshot> snap_ QF_GUARDED_BY(mu_) =
      std::make_shared<CatalogSnapshot>();
};

}  // namespace quizflow
