// Quiz definitions (spec §4): decode_quiz rules, encode_quiz round trips, and the catalog.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "core/quiz.h"
#include "unit/test_util.h"

namespace quizflow {
namespace {

using test::utc_ms;

// A valid quiz body with placeholders substituted by callers.
std::string quiz_json(const std::string& questions =
                          "[{\"question_id\":1,\"option_count\":4,"
                          "\"correct_option\":2}]",
                      const std::string& rewards = "", const std::string& extra = "",
                      const std::string& opens = "\"2026-03-01T10:00:00Z\"",
                      const std::string& closes = "\"2026-03-01T11:00:00.500+01:00\"") {
  std::string s = "{\"quiz_id\":5,\"title\":\"Capitals\",\"opens_at\":" + opens +
                  ",\"closes_at\":" + closes + ",\"questions\":" + questions;
  if (!rewards.empty()) s += ",\"rewards\":" + rewards;
  return s + extra + "}";
}

std::string q(const std::string& fields) { return "[{" + fields + "}]"; }

void expect_schema(const std::string& json, const std::string& field) {
  const QuizDecodeResult r = decode_quiz(json);
  EXPECT_FALSE(r.quiz.has_value()) << json;
  EXPECT_EQ(r.code, "schema") << json;
  EXPECT_EQ(r.field, field) << json;
  EXPECT_FALSE(r.message.empty());
}

TEST(QuizDef, DecodesAValidQuizWithDefaults) {
  const QuizDecodeResult r = decode_quiz(quiz_json());
  ASSERT_TRUE(r.quiz.has_value()) << r.message << " " << r.field;
  const QuizDef& d = *r.quiz;
  EXPECT_EQ(d.quiz_id, 5);
  EXPECT_EQ(d.title, "Capitals");
  EXPECT_EQ(d.opens_at_ms, utc_ms(2026, 3, 1, 10, 0, 0));
  EXPECT_EQ(d.closes_at_ms, utc_ms(2026, 3, 1, 10, 0, 0, 500));
  ASSERT_EQ(d.questions.size(), 1u);
  EXPECT_EQ(d.questions[0].question_id, 1);
  EXPECT_EQ(d.questions[0].option_count, 4);
  EXPECT_EQ(d.questions[0].correct_option, 2);
  EXPECT_EQ(d.questions[0].points, 1000);          // spec default
  EXPECT_EQ(d.questions[0].time_limit_ms, 20000);  // spec default
  EXPECT_TRUE(d.rewards.empty());
}

TEST(QuizDef, DecodesExplicitValuesAndSortsQuestionsAndRewards) {
  const std::string questions =
      "[{\"question_id\":30,\"option_count\":10,\"correct_option\":9,\"points\":100000,"
      "\"time_limit_ms\":600000},"
      "{\"question_id\":2,\"option_count\":2,\"correct_option\":0,\"points\":1,"
      "\"time_limit_ms\":1000}]";
  const std::string rewards =
      "[{\"rank_from\":4,\"rank_to\":10,\"reward\":\"sticker\"},"
      "{\"rank_from\":1,\"rank_to\":1,\"reward\":\"gold\"},"
      "{\"rank_from\":2,\"rank_to\":3,\"reward\":\"silver\"}]";
  const QuizDecodeResult r = decode_quiz(quiz_json(questions, rewards));
  ASSERT_TRUE(r.quiz.has_value()) << r.message << " " << r.field;
  const QuizDef& d = *r.quiz;
  ASSERT_EQ(d.questions.size(), 2u);
  EXPECT_EQ(d.questions[0], (Question{2, 2, 0, 1, 1000}));
  EXPECT_EQ(d.questions[1], (Question{30, 10, 9, 100000, 600000}));
  ASSERT_NE(d.find_question(30), nullptr);
  EXPECT_EQ(d.find_question(30)->points, 100000);
  EXPECT_EQ(d.find_question(3), nullptr);
  ASSERT_EQ(d.rewards.size(), 3u);
  EXPECT_EQ(d.rewards[0], (RewardTier{1, 1, "gold"}));
  EXPECT_EQ(d.rewards[1], (RewardTier{2, 3, "silver"}));
  EXPECT_EQ(d.rewards[2], (RewardTier{4, 10, "sticker"}));
}

TEST(QuizDef, QuestionBounds) {
  const std::string base = "\"question_id\":1,\"option_count\":4,\"correct_option\":0";
  // option_count 2..10
  expect_schema(quiz_json(q("\"question_id\":1,\"option_count\":1,\"correct_option\":0")),
                "questions[0].option_count");
  expect_schema(quiz_json(q("\"question_id\":1,\"option_count\":11,\"correct_option\":0")),
                "questions[0].option_count");
  EXPECT_TRUE(
      decode_quiz(quiz_json(q("\"question_id\":1,\"option_count\":2,\"correct_option\":1"))).quiz);
  EXPECT_TRUE(
      decode_quiz(quiz_json(q("\"question_id\":1,\"option_count\":10,\"correct_option\":9"))).quiz);
  // correct_option in 0..option_count-1
  expect_schema(quiz_json(q("\"question_id\":1,\"option_count\":4,\"correct_option\":4")),
                "questions[0].correct_option");
  expect_schema(quiz_json(q("\"question_id\":1,\"option_count\":4,\"correct_option\":-1")),
                "questions[0].correct_option");
  // points 1..100000
  expect_schema(quiz_json(q(base + ",\"points\":0")), "questions[0].points");
  expect_schema(quiz_json(q(base + ",\"points\":100001")), "questions[0].points");
  expect_schema(quiz_json(q(base + ",\"points\":10.5")), "questions[0].points");
  EXPECT_TRUE(decode_quiz(quiz_json(q(base + ",\"points\":1"))).quiz);
  EXPECT_TRUE(decode_quiz(quiz_json(q(base + ",\"points\":100000"))).quiz);
  // time_limit_ms 1000..600000
  expect_schema(quiz_json(q(base + ",\"time_limit_ms\":999")), "questions[0].time_limit_ms");
  expect_schema(quiz_json(q(base + ",\"time_limit_ms\":600001")), "questions[0].time_limit_ms");
  expect_schema(quiz_json(q(base + ",\"time_limit_ms\":\"20000\"")), "questions[0].time_limit_ms");
  EXPECT_TRUE(decode_quiz(quiz_json(q(base + ",\"time_limit_ms\":1000"))).quiz);
  EXPECT_TRUE(decode_quiz(quiz_json(q(base + ",\"time_limit_ms\":600000"))).quiz);
  // question_id 1..2^31-1
  expect_schema(quiz_json(q("\"question_id\":0,\"option_count\":4,\"correct_option\":0")),
                "questions[0].question_id");
  expect_schema(quiz_json(q("\"question_id\":2147483648,\"option_count\":4,\"correct_option\":0")),
                "questions[0].question_id");
  // missing required fields
  expect_schema(quiz_json(q("\"option_count\":4,\"correct_option\":0")),
                "questions[0].question_id");
  expect_schema(quiz_json(q("\"question_id\":1,\"correct_option\":0")),
                "questions[0].option_count");
  expect_schema(quiz_json(q("\"question_id\":1,\"option_count\":4")),
                "questions[0].correct_option");
  // unknown field in a question
  expect_schema(quiz_json(q(base + ",\"answer\":\"x\"")), "questions[0].answer");
  // not an object
  expect_schema(quiz_json("[1]"), "questions[0]");
}

TEST(QuizDef, QuestionCountAndDuplicates) {
  expect_schema(quiz_json("[]"), "questions");
  expect_schema(quiz_json("{}"), "questions");
  auto many = [](int n) {
    std::string s = "[";
    for (int i = 1; i <= n; ++i)
      s += (i > 1 ? "," : "") + std::string("{\"question_id\":") + std::to_string(i) +
           ",\"option_count\":2,\"correct_option\":0}";
    return s + "]";
  };
  const auto r500 = decode_quiz(quiz_json(many(500)));
  ASSERT_TRUE(r500.quiz.has_value()) << r500.message;
  EXPECT_EQ(r500.quiz->questions.size(), 500u);
  expect_schema(quiz_json(many(501)), "questions");
  expect_schema(quiz_json("[{\"question_id\":7,\"option_count\":2,\"correct_option\":0},"
                          "{\"question_id\":7,\"option_count\":3,\"correct_option\":1}]"),
                "questions[1].question_id");
}

TEST(QuizDef, TimesAndWindow) {
  expect_schema(quiz_json(q("\"question_id\":1,\"option_count\":2,\"correct_option\":0"), "", "",
                          "\"2026-03-01T11:00:00Z\"", "\"2026-03-01T11:00:00Z\""),
                "closes_at");
  expect_schema(quiz_json(q("\"question_id\":1,\"option_count\":2,\"correct_option\":0"), "", "",
                          "\"2026-03-01T11:00:00Z\"", "\"2026-03-01T10:00:00Z\""),
                "closes_at");
  // Same instant written in two zones is still not "before".
  expect_schema(quiz_json(q("\"question_id\":1,\"option_count\":2,\"correct_option\":0"), "", "",
                          "\"2026-03-01T11:00:00Z\"", "\"2026-03-01T12:00:00+01:00\""),
                "closes_at");
  expect_schema(quiz_json(q("\"question_id\":1,\"option_count\":2,\"correct_option\":0"), "", "",
                          "\"2026-02-30T11:00:00Z\""),
                "opens_at");
  expect_schema(quiz_json(q("\"question_id\":1,\"option_count\":2,\"correct_option\":0"), "", "",
                          "\"2026-03-01T11:00:00\""),
                "opens_at");
  expect_schema(quiz_json(q("\"question_id\":1,\"option_count\":2,\"correct_option\":0"), "", "",
                          "1772359200000"),
                "opens_at");
  const auto ok =
      decode_quiz(quiz_json(q("\"question_id\":1,\"option_count\":2,\"correct_option\":0"), "", "",
                            "\"2026-03-01T11:00:00Z\"", "\"2026-03-01T11:00:00.001Z\""));
  EXPECT_TRUE(ok.quiz.has_value()) << ok.message;
}

TEST(QuizDef, Rewards) {
  const std::string qs = q("\"question_id\":1,\"option_count\":2,\"correct_option\":0");
  // overlap, whatever the input order
  expect_schema(quiz_json(qs,
                          "[{\"rank_from\":1,\"rank_to\":3,\"reward\":\"a\"},"
                          "{\"rank_from\":3,\"rank_to\":5,\"reward\":\"b\"}]"),
                "rewards");
  expect_schema(quiz_json(qs,
                          "[{\"rank_from\":5,\"rank_to\":9,\"reward\":\"b\"},"
                          "{\"rank_from\":1,\"rank_to\":6,\"reward\":\"a\"}]"),
                "rewards");
  expect_schema(quiz_json(qs,
                          "[{\"rank_from\":2,\"rank_to\":2,\"reward\":\"a\"},"
                          "{\"rank_from\":2,\"rank_to\":2,\"reward\":\"b\"}]"),
                "rewards");
  // 1 <= a <= b
  expect_schema(quiz_json(qs, "[{\"rank_from\":0,\"rank_to\":3,\"reward\":\"a\"}]"),
                "rewards[0].rank_from");
  expect_schema(quiz_json(qs, "[{\"rank_from\":4,\"rank_to\":3,\"reward\":\"a\"}]"),
                "rewards[0].rank_to");
  expect_schema(quiz_json(qs, "[{\"rank_from\":1,\"rank_to\":1}]"), "rewards[0].reward");
  expect_schema(quiz_json(qs, "[{\"rank_from\":1,\"rank_to\":1,\"reward\":\"\"}]"),
                "rewards[0].reward");
  expect_schema(quiz_json(qs, "[{\"rank_from\":1,\"rank_to\":1,\"reward\":\"a\",\"x\":1}]"),
                "rewards[0].x");
  expect_schema(quiz_json(qs, "{}"), "rewards");
  // adjacent tiers and single-rank tiers are fine; zero tiers too
  auto r = decode_quiz(quiz_json(qs,
                                 "[{\"rank_from\":1,\"rank_to\":1,\"reward\":\"a\"},"
                                 "{\"rank_from\":2,\"rank_to\":100,\"reward\":\"b\"}]"));
  EXPECT_TRUE(r.quiz.has_value()) << r.message << " " << r.field;
  r = decode_quiz(quiz_json(qs, "[]"));
  ASSERT_TRUE(r.quiz.has_value());
  EXPECT_TRUE(r.quiz->rewards.empty());
}

TEST(QuizDef, TopLevelSchema) {
  expect_schema(quiz_json(q("\"question_id\":1,\"option_count\":2,\"correct_option\":0"), "",
                          ",\"state\":\"open\""),
                "state");
  expect_schema(
      "{\"title\":\"t\",\"opens_at\":\"2026-03-01T10:00:00Z\",\"closes_at\":\"2026-03-01T11:00:"
      "00Z\",\"questions\":[{\"question_id\":1,\"option_count\":2,\"correct_option\":0}]}",
      "quiz_id");
  for (const char* id : {"0", "-1", "1.0", "\"5\"", "9223372036854775808"}) {
    std::string json = quiz_json();
    json.replace(json.find("\"quiz_id\":5"), 11, std::string("\"quiz_id\":") + id);
    expect_schema(json, "quiz_id");
  }
  std::string no_title = quiz_json();
  no_title.replace(no_title.find("\"title\":\"Capitals\","), 19, "");
  expect_schema(no_title, "title");
  std::string empty_title = quiz_json();
  empty_title.replace(empty_title.find("\"Capitals\""), 10, "\"\"");
  expect_schema(empty_title, "title");
  std::string nul_title = quiz_json();
  nul_title.replace(nul_title.find("\"Capitals\""), 10, "\"Cap\\u0000itals\"");
  expect_schema(nul_title, "title");
  const QuizDecodeResult arr = decode_quiz("[]");
  EXPECT_FALSE(arr.quiz.has_value());
  EXPECT_EQ(arr.code, "schema");
}

TEST(QuizDef, MalformedAndHostileJson) {
  for (const std::string& json :
       {std::string(""), std::string("{"), quiz_json() + "x", quiz_json() + quiz_json(),
        std::string(100000, '['), std::string(100000, '[') + std::string(100000, ']'),
        std::string(100000, '{')}) {
    const QuizDecodeResult r = decode_quiz(json);
    EXPECT_FALSE(r.quiz.has_value()) << json.substr(0, 50);
    EXPECT_FALSE(r.code.empty());
  }
  EXPECT_EQ(decode_quiz("{").code, "malformed_json");
  EXPECT_EQ(decode_quiz(quiz_json() + "x").code, "malformed_json");
}

TEST(QuizDef, EncodeDecodeRoundTrip) {
  QuizDef d;
  d.quiz_id = 9223372036854775807;
  d.title = "Quiz \"night\" \\ ünïcødé \n tab\t";
  d.opens_at_ms = utc_ms(2026, 3, 1, 10, 0, 0, 7);
  d.closes_at_ms = utc_ms(2026, 3, 1, 10, 30, 0, 999);
  d.questions = {Question{1, 2, 1, 1, 1000}, Question{2147483647, 10, 9, 100000, 600000},
                 Question{77, 4, 0, 1000, 20000}};
  std::sort(d.questions.begin(), d.questions.end(),
            [](const Question& a, const Question& b) { return a.question_id < b.question_id; });
  d.rewards = {RewardTier{1, 1, "gold"}, RewardTier{2, 5, "silver \"x\""},
               RewardTier{6, 9223372036854775807, "thanks"}};
  const std::string json = encode_quiz(d);
  const QuizDecodeResult r = decode_quiz(json);
  ASSERT_TRUE(r.quiz.has_value()) << r.message << " " << r.field << "\n" << json;
  EXPECT_EQ(*r.quiz, d);
  EXPECT_NE(json.find("\"opens_at\":\"2026-03-01T10:00:00.007Z\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"closes_at\":\"2026-03-01T10:30:00.999Z\""), std::string::npos) << json;
  // Canonical: encoding the decoded quiz gives the same text.
  EXPECT_EQ(encode_quiz(*r.quiz), json);
}

TEST(QuizDef, EncodingIsIndependentOfInputOrder) {
  const std::string a = quiz_json(
      "[{\"question_id\":2,\"option_count\":2,\"correct_option\":0},"
      "{\"question_id\":1,\"option_count\":3,\"correct_option\":2,\"points\":500}]",
      "[{\"rank_from\":2,\"rank_to\":2,\"reward\":\"b\"},"
      "{\"rank_from\":1,\"rank_to\":1,\"reward\":\"a\"}]");
  const std::string b =
      "{\"rewards\":[{\"reward\":\"a\",\"rank_to\":1,\"rank_from\":1},"
      "{\"rank_from\":2,\"rank_to\":2,\"reward\":\"b\"}],"
      "\"questions\":[{\"points\":500,\"question_id\":1,\"option_count\":3,\"correct_option\":2},"
      "{\"question_id\":2,\"option_count\":2,\"correct_option\":0,\"points\":1000,"
      "\"time_limit_ms\":20000}],"
      "\"closes_at\":\"2026-03-01T10:00:00.500Z\",\"opens_at\":\"2026-03-01T11:00:00+01:00\","
      "\"title\":\"Capitals\",\"quiz_id\":5}";
  const auto ra = decode_quiz(a), rb = decode_quiz(b);
  ASSERT_TRUE(ra.quiz && rb.quiz) << ra.message << rb.message;
  EXPECT_EQ(*ra.quiz, *rb.quiz);
  EXPECT_EQ(encode_quiz(*ra.quiz), encode_quiz(*rb.quiz));
}

// ---- Catalog -------------------------------------------------------------------------------

QuizDef simple_quiz(int64_t id) {
  QuizDef d;
  d.quiz_id = id;
  d.title = "q" + std::to_string(id);
  d.opens_at_ms = 1000;
  d.closes_at_ms = 2000;
  d.questions = {Question{1, 2, 0, 1000, 20000}};
  return d;
}

TEST(Catalog, PutFindAndSnapshotsAreImmutable) {
  Catalog c;
  const auto empty = c.snapshot();
  EXPECT_EQ(empty->find(1), nullptr);
  c.put(simple_quiz(1));
  const auto one = c.snapshot();
  ASSERT_NE(one->find(1), nullptr);
  EXPECT_EQ(one->find(1)->title, "q1");
  EXPECT_EQ(empty->find(1), nullptr);  // old snapshot unchanged
  QuizDef changed = simple_quiz(1);
  changed.title = "renamed";
  c.put(changed);
  EXPECT_EQ(one->find(1)->title, "q1");
  EXPECT_EQ(c.snapshot()->find(1)->title, "renamed");
  EXPECT_EQ(c.snapshot()->find(2), nullptr);
}

TEST(Catalog, StateOf) {
  Catalog c;
  const QuizDef d = simple_quiz(1);
  c.put(d);
  auto s = c.snapshot();
  EXPECT_EQ(s->state_of(d, 1500), QuizState::open);
  EXPECT_EQ(s->state_of(d, 1999), QuizState::open);
  EXPECT_EQ(s->state_of(d, 2000), QuizState::closed);  // closes_at is exclusive
  c.set_state(1, QuizState::closed);
  EXPECT_EQ(c.snapshot()->state_of(d, 1500), QuizState::closed);
  c.set_state(1, QuizState::finalized);
  EXPECT_EQ(c.snapshot()->state_of(d, 1500), QuizState::finalized);
  EXPECT_EQ(c.snapshot()->state_of(d, 5000), QuizState::finalized);
  EXPECT_EQ(s->state_of(d, 1500), QuizState::open);  // earlier snapshot unchanged
  EXPECT_STREQ(to_string(QuizState::open), "open");
  EXPECT_STREQ(to_string(QuizState::closed), "closed");
  EXPECT_STREQ(to_string(QuizState::finalized), "finalized");
}

TEST(Catalog, ReplaceAll) {
  Catalog c;
  c.put(simple_quiz(1));
  c.replace_all(
      {QuizRecord{simple_quiz(2), QuizState::open}, QuizRecord{simple_quiz(3), QuizState::closed},
       QuizRecord{simple_quiz(4), QuizState::finalized}},
      {9, 5});
  const auto s = c.snapshot();
  EXPECT_EQ(s->find(1), nullptr);
  ASSERT_NE(s->find(2), nullptr);
  ASSERT_NE(s->find(3), nullptr);
  EXPECT_EQ(*s->find(3), simple_quiz(3));
  EXPECT_EQ(s->state_of(simple_quiz(2), 1500), QuizState::open);
  EXPECT_EQ(s->state_of(simple_quiz(3), 1500), QuizState::closed);  // a requested close
  // Finalized quizzes keep only their id: their definitions are read from storage.
  EXPECT_EQ(s->find(4), nullptr);
  for (int64_t id : {4, 5, 9}) EXPECT_TRUE(s->is_finalized(id)) << id;
  for (int64_t id : {1, 2, 3, 6}) EXPECT_FALSE(s->is_finalized(id)) << id;
}

TEST(Catalog, FinalizedQuizLeavesMemoryAndCannotComeBack) {
  Catalog c;
  c.put(simple_quiz(1));
  c.put(simple_quiz(2));
  c.set_state(1, QuizState::finalized);
  auto s = c.snapshot();
  EXPECT_EQ(s->find(1), nullptr);
  EXPECT_TRUE(s->is_finalized(1));
  EXPECT_NE(s->find(2), nullptr);
  c.put(simple_quiz(1));  // a late idempotent re-create does not revive it
  EXPECT_EQ(c.snapshot()->find(1), nullptr);
  EXPECT_EQ(c.snapshot()->finalized->size(), 1u);
}

TEST(Catalog, ConcurrentReadersSeeWholeSnapshots) {
  Catalog c;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int64_t i = 1; i <= 2000; ++i) c.put(simple_quiz(i));
    stop = true;
  });
  size_t last = 0;
  while (!stop) {
    const auto s = c.snapshot();
    EXPECT_GE(s->quizzes.size(), last);  // snapshots only grow
    last = s->quizzes.size();
    for (const auto& [id, q] : s->quizzes) ASSERT_EQ(q->quiz_id, id);
  }
  writer.join();
  EXPECT_EQ(c.snapshot()->quizzes.size(), 2000u);
}

}  // namespace
}  // namespace quizflow
