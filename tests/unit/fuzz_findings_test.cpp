// Regressions found by the fuzz targets (tests/fuzz): each test is named after what broke.
#include <gtest/gtest.h>

#include <string>

#include "core/quiz.h"
#include "core/request.h"
#include "core/time_util.h"
#include "stages/ingest.h"
#include "unit/test_util.h"

namespace quizflow {
namespace {

using test::utc_ms;

std::string quiz_with(const std::string& opens, const std::string& closes) {
  return "{\"quiz_id\":5,\"title\":\"T\",\"opens_at\":\"" + opens + "\",\"closes_at\":\"" + closes +
         "\",\"questions\":[{\"question_id\":1,\"option_count\":2,\"correct_option\":0}]}";
}

std::string answer_at(const std::string& at) {
  return "{\"event_id\":\"e-1\",\"quiz_id\":1,\"user_id\":2,\"question_id\":1,\"option_id\":0,"
         "\"answered_at\":\"" +
         at + "\",\"elapsed_ms\":10}";
}

// An offset carried a date of year 1 or 9999 out of years 0001-9999 UTC: the quiz decoded, but
// its canonical text ("0000-12-31T..." / "10000-01-01T...") was refused by PostgreSQL (a 503 for
// a bad request) or stored and then unreadable (the quiz skipped at the next start).
TEST(FuzzFindings, TimestampOffsetOutOfYears1To9999UtcIsRejected) {
  EXPECT_FALSE(parse_rfc3339_ms("0001-01-01T00:00:00+00:01"));
  EXPECT_FALSE(parse_rfc3339_ms("0001-01-01T00:59:59.999+01:00"));
  EXPECT_FALSE(parse_rfc3339_ms("9999-12-31T23:59:59-00:01"));
  EXPECT_FALSE(parse_rfc3339_ms("9999-12-31T23:00:00-01:00"));
  // The ends themselves, however written.
  EXPECT_EQ(parse_rfc3339_ms("0001-01-01T00:00:00Z"), utc_ms(1, 1, 1, 0, 0, 0));
  EXPECT_EQ(parse_rfc3339_ms("0001-01-01T01:00:00+01:00"), utc_ms(1, 1, 1, 0, 0, 0));
  EXPECT_EQ(parse_rfc3339_ms("9999-12-31T23:59:59.999Z"), utc_ms(9999, 12, 31, 23, 59, 59, 999));
  EXPECT_EQ(parse_rfc3339_ms("9999-12-31T22:59:59.999-01:00"),
            utc_ms(9999, 12, 31, 23, 59, 59, 999));
}

TEST(FuzzFindings, QuizTimesOutOfYears1To9999UtcAreSchemaErrors) {
  const QuizDecodeResult early =
      decode_quiz(quiz_with("0001-01-01T00:00:00+00:01", "2026-01-01T00:00:00Z"));
  EXPECT_FALSE(early.quiz);
  EXPECT_EQ(early.code, "schema");
  EXPECT_EQ(early.field, "opens_at");
  const QuizDecodeResult late =
      decode_quiz(quiz_with("2026-01-01T00:00:00Z", "9999-12-31T23:59:59-00:01"));
  EXPECT_FALSE(late.quiz);
  EXPECT_EQ(late.code, "schema");
  EXPECT_EQ(late.field, "closes_at");
  // At the ends the canonical text decodes to the same quiz.
  const QuizDecodeResult ends =
      decode_quiz(quiz_with("0001-01-01T01:00:00+01:00", "9999-12-31T22:59:59.999-01:00"));
  ASSERT_TRUE(ends.quiz);
  const QuizDecodeResult again = decode_quiz(encode_quiz(*ends.quiz));
  ASSERT_TRUE(again.quiz);
  EXPECT_EQ(*again.quiz, *ends.quiz);
}

TEST(FuzzFindings, AnswerTimeOutOfYears1To9999UtcIsSchemaError) {
  for (const char* at : {"0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01"}) {
    const Item it = stages::decode_answer_json(answer_at(at));
    EXPECT_FALSE(it.event) << at;
    EXPECT_EQ(it.verdict.code, "schema") << at;
    EXPECT_EQ(it.verdict.field, "answered_at") << at;
  }
}

std::string quiz_titled(const std::string& title_json) {
  return "{\"quiz_id\":5,\"title\":\"" + title_json +
         "\",\"opens_at\":\"2026-01-01T00:00:00Z\",\"closes_at\":\"2026-01-02T00:00:00Z\","
         "\"questions\":[{\"question_id\":1,\"option_count\":2,\"correct_option\":0}]}";
}

// RapidJSON 1.1.0 decodes a lone low surrogate escape into bytes that are not UTF-8: such a
// title was accepted, then refused by PostgreSQL (invalid byte sequence: a 503 for a bad
// request), and an unknown field named so was echoed in the error body as invalid UTF-8.
TEST(FuzzFindings, QuizWithLoneLowSurrogateEscapeIsMalformed) {
  for (const char* title : {"a\\udc00", "\\uDFFF", "\\ud83d\\ude00\\ude00", "\\\\\\udc00"}) {
    const QuizDecodeResult r = decode_quiz(quiz_titled(title));
    EXPECT_FALSE(r.quiz) << title;
    EXPECT_EQ(r.code, "malformed_json") << title;
  }
  const QuizDecodeResult key = decode_quiz("{\"\\udc00\":1}");
  EXPECT_EQ(key.code, "malformed_json");
  EXPECT_TRUE(key.field.empty());
  // A pair, an escaped backslash before "udc00", and other \u escapes stay valid.
  const QuizDecodeResult pair = decode_quiz(quiz_titled("\\ud83d\\ude00 \\\\udc00 \\u00e9"));
  ASSERT_TRUE(pair.quiz) << pair.message;
  EXPECT_EQ(pair.quiz->title, "\xF0\x9F\x98\x80 \\udc00 \xC3\xA9");
}

// The same in answers: an unknown field so named was echoed as invalid UTF-8 in the item's error
// (the HTTP response, a dead letter); now the input is malformed, as in later RapidJSON versions.
TEST(FuzzFindings, AnswerWithLoneLowSurrogateEscapeIsMalformed) {
  const std::string lone = "{\"\\udc00\":1}";
  const Item it = stages::decode_answer_json(lone);
  EXPECT_FALSE(it.event);
  EXPECT_EQ(it.verdict.code, "malformed_json");
  EXPECT_TRUE(it.verdict.field.empty());

  const std::string bodies[] = {lone, test::cat("{\"answers\":[", lone, "]}"),
                                "{\"answers\":[],\"\\udc00\":1}"};
  for (const std::string& body : bodies) {
    Request r(body, nullptr);
    EXPECT_EQ(stages::ingest(r, stages::IngestLimits{}), 0u) << body;
    ASSERT_TRUE(r.error) << body;
    EXPECT_EQ(r.error->code, "malformed_json") << body;
    EXPECT_TRUE(r.items.empty()) << body;
  }
  // A surrogate pair in an unknown field's name is echoed as UTF-8.
  const Item pair = stages::decode_answer_json("{\"\\ud83d\\ude00\":1}");
  EXPECT_EQ(pair.verdict.code, "schema");
  EXPECT_EQ(pair.verdict.field, "\xF0\x9F\x98\x80");
}

}  // namespace
}  // namespace quizflow
