// Fuzz target: the quiz decoder (decode_quiz, core/quiz.h) — a POST /v1/quizzes body, an event
// file's quiz line, a definition read back from PostgreSQL. Invariants:
// - a result holds a quiz or an error, never both: an error has the code "malformed_json" or
//   "schema", a message and valid UTF-8 texts;
// - a decoded quiz obeys spec §4 (ids, title, window, 1-500 questions sorted by distinct id,
//   option and point ranges, reward tiers sorted and disjoint) and find_question finds each;
// - it round-trips: encode_quiz's canonical JSON (what PostgreSQL stores) decodes to an equal
//   quiz and encodes to the same text again.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/quiz.h"
#include "fuzz_check.h"

namespace quizflow::fuzz {
namespace {

void check_quiz(const QuizDef& q) {
  QF_FUZZ_CHECK(q.quiz_id >= 1);
  QF_FUZZ_CHECK(!q.title.empty() && q.title.size() <= 200);
  QF_FUZZ_CHECK(q.title.find('\0') == std::string::npos && valid_utf8(q.title));
  QF_FUZZ_CHECK(q.opens_at_ms < q.closes_at_ms);
  QF_FUZZ_CHECK(!q.questions.empty() && q.questions.size() <= 500);
  for (size_t i = 0; i < q.questions.size(); ++i) {
    const Question& x = q.questions[i];
    QF_FUZZ_CHECK(x.question_id >= 1);
    QF_FUZZ_CHECK(i == 0 || q.questions[i - 1].question_id < x.question_id);
    QF_FUZZ_CHECK(x.option_count >= 2 && x.option_count <= 10);
    QF_FUZZ_CHECK(x.correct_option >= 0 && x.correct_option < x.option_count);
    QF_FUZZ_CHECK(x.points >= 1 && x.points <= 100000);
    QF_FUZZ_CHECK(x.time_limit_ms >= 1000 && x.time_limit_ms <= 600000);
    QF_FUZZ_CHECK(q.find_question(x.question_id) == &x);
    if (x.question_id > 1 && (i == 0 || q.questions[i - 1].question_id != x.question_id - 1))
      QF_FUZZ_CHECK(q.find_question(x.question_id - 1) == nullptr);
  }
  for (size_t i = 0; i < q.rewards.size(); ++i) {
    const RewardTier& r = q.rewards[i];
    QF_FUZZ_CHECK(r.rank_from >= 1 && r.rank_from <= r.rank_to);
    QF_FUZZ_CHECK(i == 0 || q.rewards[i - 1].rank_to < r.rank_from);
    QF_FUZZ_CHECK(!r.reward.empty() && r.reward.size() <= 500 && valid_utf8(r.reward));
  }
}

void run(std::string_view input) {
  const QuizDecodeResult r = decode_quiz(input);
  if (!r.quiz) {
    QF_FUZZ_CHECK(r.code == "malformed_json" || r.code == "schema");
    QF_FUZZ_CHECK(!r.message.empty());
    QF_FUZZ_CHECK(valid_utf8(r.message) && valid_utf8(r.field));
    if (input.find('\0') != std::string_view::npos) QF_FUZZ_CHECK(r.code == "malformed_json");
    return;
  }
  QF_FUZZ_CHECK(r.code.empty() && r.message.empty() && r.field.empty());
  check_quiz(*r.quiz);

  const std::string canonical = encode_quiz(*r.quiz);
  const QuizDecodeResult again = decode_quiz(canonical);
  QF_FUZZ_CHECK(again.quiz.has_value());
  QF_FUZZ_CHECK(*again.quiz == *r.quiz);
  QF_FUZZ_CHECK(encode_quiz(*again.quiz) == canonical);
}

}  // namespace
}  // namespace quizflow::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  quizflow::fuzz::run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
