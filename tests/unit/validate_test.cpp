// The validate stage (spec §4): every rejection code, the open window's edges, and the derived
// correct/points of an accepted answer.
#include "stages/validate.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "core/quiz.h"
#include "unit/test_util.h"

namespace quizflow::stages {
namespace {

using test::utc_ms;

constexpr int64_t kQuiz = 10;
const int64_t kOpens = utc_ms(2026, 3, 1, 10, 0, 0);
const int64_t kCloses = kOpens + 3600 * 1000;

QuizDef make_quiz() {
  QuizDef q;
  q.quiz_id = kQuiz;
  q.title = "capitals";
  q.opens_at_ms = kOpens;
  q.closes_at_ms = kCloses;
  // question_id, option_count, correct_option, points, time_limit_ms
  q.questions = {Question{1, 4, 2, 1000, 20000}, Question{2, 2, 0, 999, 1000},
                 Question{5, 10, 9, 100000, 600000}};
  return q;
}

class Validate : public ::testing::Test {
 protected:
  void SetUp() override { catalog_.put(make_quiz()); }

  static AnswerEvent answer(int32_t question, int64_t option, int64_t elapsed,
                            int64_t at = kOpens + 1000) {
    AnswerEvent e;
    e.event_id = "ev-1";
    e.quiz_id = kQuiz;
    e.user_id = 77;
    e.question_id = question;
    e.option_id = option;
    e.answered_at_ms = at;
    e.elapsed_ms = elapsed;
    return e;
  }

  Verdict check(AnswerEvent& e) { return validate(e, *catalog_.snapshot()); }

  void expect_code(AnswerEvent e, const std::string& code, const std::string& what) {
    SCOPED_TRACE(what);
    const Verdict v = check(e);
    EXPECT_EQ(v.status, ItemStatus::rejected);
    EXPECT_EQ(v.code, code);
    EXPECT_FALSE(v.message.empty());
  }

  void expect_accepted(AnswerEvent e, const std::string& what) {
    SCOPED_TRACE(what);
    const Verdict v = check(e);
    EXPECT_EQ(v.status, ItemStatus::pending) << v.code << ": " << v.message;
    EXPECT_TRUE(v.code.empty());
  }

  Catalog catalog_;
};

TEST_F(Validate, AcceptedAnswerDerivesCorrectAndPoints) {
  AnswerEvent e = answer(1, 2, 5000);
  const Verdict v = check(e);
  EXPECT_EQ(v.status, ItemStatus::pending);
  EXPECT_TRUE(e.correct);
  // 1000 - floor(1000 * 5000 / 40000) = 1000 - 125
  EXPECT_EQ(e.points, 875);
}

TEST_F(Validate, WrongAnswerIsAcceptedWithZeroPoints) {
  for (int64_t option : {0, 1, 3}) {
    AnswerEvent e = answer(1, option, 0);
    e.correct = true;  // stale values must be overwritten
    e.points = 123;
    EXPECT_EQ(check(e).status, ItemStatus::pending);
    EXPECT_FALSE(e.correct) << option;
    EXPECT_EQ(e.points, 0) << option;
  }
}

TEST_F(Validate, UnknownQuiz) {
  AnswerEvent e = answer(1, 2, 0);
  e.quiz_id = kQuiz + 1;
  expect_code(e, "unknown_quiz", "quiz 11");
  Catalog empty;
  AnswerEvent f = answer(1, 2, 0);
  const Verdict v = validate(f, *empty.snapshot());
  EXPECT_EQ(v.code, "unknown_quiz");
}

TEST_F(Validate, QuizFinalized) {
  const auto before = catalog_.snapshot();
  catalog_.set_state(kQuiz, QuizState::finalized);
  expect_code(answer(1, 2, 0), "quiz_finalized", "in-window answer to a finalized quiz");
  // Finalization wins over every other problem of the answer, including the window.
  expect_code(answer(1, 2, 0, kCloses + 5000), "quiz_finalized", "late answer, finalized quiz");
  expect_code(answer(1, 2, 0, kOpens - 1), "quiz_finalized", "early answer, finalized quiz");
  // A snapshot taken before finalization is immutable.
  AnswerEvent e = answer(1, 2, 0);
  EXPECT_EQ(validate(e, *before).status, ItemStatus::pending);
}

TEST_F(Validate, FinalizationOfAnotherQuizDoesNotMatter) {
  QuizDef other = make_quiz();
  other.quiz_id = kQuiz + 1;
  catalog_.put(other);
  catalog_.set_state(kQuiz + 1, QuizState::finalized);
  expect_accepted(answer(1, 2, 0), "quiz 10 still open");
  AnswerEvent e = answer(1, 2, 0);
  e.quiz_id = kQuiz + 1;
  expect_code(e, "quiz_finalized", "quiz 11 finalized");
}

TEST_F(Validate, ClosedByRequestIsNotOpen) {
  catalog_.set_state(kQuiz, QuizState::closed);
  expect_code(answer(1, 2, 0), "quiz_not_open", "in-window answer after POST /close");
}

TEST_F(Validate, QuizNotOpenWindowEdges) {
  expect_code(answer(1, 2, 0, kOpens - 1), "quiz_not_open", "1 ms before opens_at");
  expect_code(answer(1, 2, 0, kOpens - 86400000), "quiz_not_open", "a day before opens_at");
  expect_accepted(answer(1, 2, 0, kOpens), "exactly opens_at");
  expect_accepted(answer(1, 2, 0, kCloses - 1), "1 ms before closes_at");
  expect_code(answer(1, 2, 0, kCloses), "quiz_not_open", "exactly closes_at");
  expect_code(answer(1, 2, 0, kCloses + 1), "quiz_not_open", "after closes_at");
  expect_code(answer(1, 2, 0, 0), "quiz_not_open", "epoch");
  expect_code(answer(1, 2, 0, INT64_MIN), "quiz_not_open", "INT64_MIN");
  expect_code(answer(1, 2, 0, INT64_MAX), "quiz_not_open", "INT64_MAX");
}

TEST_F(Validate, UnknownQuestion) {
  for (int32_t q : {0, 3, 4, 6, -1, 2147483647}) {
    expect_code(answer(q, 0, 0), "unknown_question", "question " + std::to_string(q));
  }
  for (int32_t q : {1, 2, 5}) expect_accepted(answer(q, 0, 0), "question " + std::to_string(q));
}

TEST_F(Validate, OptionOutOfRange) {
  // question 1 has 4 options: 0..3
  expect_code(answer(1, -1, 0), "option_out_of_range", "option -1");
  expect_code(answer(1, 4, 0), "option_out_of_range", "option == option_count");
  expect_code(answer(1, 1LL << 32, 0), "option_out_of_range", "option 2^32");
  expect_code(answer(1, INT64_MIN, 0), "option_out_of_range", "option INT64_MIN");
  expect_code(answer(1, INT64_MAX, 0), "option_out_of_range", "option INT64_MAX");
  expect_accepted(answer(1, 0, 0), "option 0");
  expect_accepted(answer(1, 3, 0), "option_count - 1");
  // question 2 has 2 options, question 5 has 10.
  expect_code(answer(2, 2, 0), "option_out_of_range", "q2 option 2");
  expect_accepted(answer(2, 1, 0), "q2 option 1");
  expect_code(answer(5, 10, 0), "option_out_of_range", "q5 option 10");
  expect_accepted(answer(5, 9, 0), "q5 option 9");
}

TEST_F(Validate, ElapsedOutOfRange) {
  // question 1: time limit 20000
  expect_code(answer(1, 2, -1), "elapsed_out_of_range", "elapsed -1");
  expect_code(answer(1, 2, 20001), "elapsed_out_of_range", "time_limit + 1");
  expect_code(answer(1, 2, INT64_MAX), "elapsed_out_of_range", "INT64_MAX");
  expect_code(answer(1, 2, INT64_MIN), "elapsed_out_of_range", "INT64_MIN");
  expect_accepted(answer(1, 2, 0), "elapsed 0");
  expect_accepted(answer(1, 2, 20000), "elapsed == time_limit");
  // question 2: time limit 1000
  expect_code(answer(2, 0, 1001), "elapsed_out_of_range", "q2 1001");
  expect_accepted(answer(2, 0, 1000), "q2 1000");
  // A wrong answer is range-checked too.
  expect_code(answer(1, 0, 20001), "elapsed_out_of_range", "wrong answer, too slow");
}

TEST_F(Validate, PointsAtTheEdges) {
  struct Case {
    int32_t question;
    int64_t elapsed;
    int64_t want;  // computed by hand from points - floor(points * elapsed / (2 * limit))
  };
  const Case cases[] = {
      {1, 0, 1000},        // full points
      {1, 20000, 500},     // 1000 - 500
      {1, 1, 1000},        // floor(1000/40000) = 0
      {1, 40, 999},        // floor(40000/40000) = 1
      {1, 39, 1000},       // floor(39000/40000) = 0
      {2, 0, 999},         // full points
      {2, 1, 999},         // floor(999/2000) = 0
      {2, 3, 998},         // floor(2997/2000) = 1
      {2, 1000, 500},      // 999 - floor(999/2) = 999 - 499
      {5, 600000, 50000},  // 100000 - floor(6e10 / 1.2e6)
      {5, 599999, 50001},  // floor(59999900000 / 1200000) = 49999
      {5, 12, 99999},      // floor(1200000 / 1200000) = 1
      {5, 11, 100000},     // floor(1100000 / 1200000) = 0
  };
  for (const auto& c : cases) {
    AnswerEvent e =
        answer(c.question, make_quiz().find_question(c.question)->correct_option, c.elapsed);
    ASSERT_EQ(check(e).status, ItemStatus::pending);
    EXPECT_TRUE(e.correct);
    EXPECT_EQ(e.points, c.want) << "q" << c.question << " elapsed " << c.elapsed;
  }
}

TEST_F(Validate, QuestionsAreFoundWhateverTheirInputOrder) {
  // The catalog is normally filled from decode_quiz (sorted); a quiz decoded from unsorted JSON
  // must still find every question.
  auto r = decode_quiz(
      "{\"quiz_id\":20,\"title\":\"t\",\"opens_at\":\"2026-03-01T10:00:00Z\","
      "\"closes_at\":\"2026-03-01T11:00:00Z\",\"questions\":["
      "{\"question_id\":9,\"option_count\":3,\"correct_option\":1},"
      "{\"question_id\":2,\"option_count\":2,\"correct_option\":0},"
      "{\"question_id\":5,\"option_count\":4,\"correct_option\":3}]}");
  ASSERT_TRUE(r.quiz.has_value()) << r.message << " " << r.field;
  catalog_.put(*r.quiz);
  for (auto [question, correct] : {std::pair{9, 1}, std::pair{2, 0}, std::pair{5, 3}}) {
    AnswerEvent e = answer(question, correct, 0);
    e.quiz_id = 20;
    ASSERT_EQ(check(e).status, ItemStatus::pending) << question;
    EXPECT_TRUE(e.correct) << question;
    EXPECT_EQ(e.points, 1000) << question;  // default points
  }
}

}  // namespace
}  // namespace quizflow::stages
