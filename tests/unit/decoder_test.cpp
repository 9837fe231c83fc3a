// The answer decoder (spec §3 schema rules) and the ingest stage's request-level handling,
// including hostile input (spec §5.8: bad input never hurts).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "stages/ingest.h"
#include "unit/test_util.h"

namespace quizflow::stages {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;  // name -> raw JSON value

using test::utc_ms;

Fields base_fields() {
  return {{"event_id", "\"ev-1\""}, {"quiz_id", "7"},
          {"user_id", "42"},        {"question_id", "3"},
          {"option_id", "1"},       {"answered_at", "\"2026-03-01T10:00:00.123Z\""},
          {"elapsed_ms", "1500"}};
}

std::string to_json(const Fields& f) {
  std::string s = "{";
  for (size_t i = 0; i < f.size(); ++i) {
    if (i) s += ",";
    s += "\"" + f[i].first + "\":" + f[i].second;
  }
  return s + "}";
}

Fields with(Fields f, const std::string& name, const std::string& raw) {
  for (auto& [k, v] : f)
    if (k == name) v = raw;
  return f;
}

Fields without(Fields f, const std::string& name) {
  std::erase_if(f, [&](const auto& kv) { return kv.first == name; });
  return f;
}

std::string answer_json(const std::string& name, const std::string& raw) {
  return to_json(with(base_fields(), name, raw));
}

void expect_schema(const Item& it, const std::string& field, const std::string& input) {
  SCOPED_TRACE("input: " + input);
  EXPECT_FALSE(it.event.has_value());
  EXPECT_EQ(it.verdict.status, ItemStatus::rejected);
  EXPECT_EQ(it.verdict.code, "schema");
  EXPECT_EQ(it.verdict.field, field);
}

void expect_rejected(const Item& it, const std::string& input) {
  SCOPED_TRACE("input: " + input);
  EXPECT_FALSE(it.event.has_value());
  EXPECT_EQ(it.verdict.status, ItemStatus::rejected);
  EXPECT_FALSE(it.verdict.code.empty());
}

void expect_decodes(const std::string& json) {
  SCOPED_TRACE("input: " + json);
  const Item it = decode_answer_json(json);
  EXPECT_TRUE(it.event.has_value());
  EXPECT_EQ(it.verdict.status, ItemStatus::pending);
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// A valid answer

TEST(Decoder, ValidAnswerDecodesEveryField) {
  const Item it = decode_answer_json(to_json(base_fields()));
  ASSERT_TRUE(it.event.has_value()) << it.verdict.code << " " << it.verdict.field;
  EXPECT_EQ(it.verdict.status, ItemStatus::pending);
  EXPECT_EQ(it.event->event_id, "ev-1");
  EXPECT_EQ(it.event->quiz_id, 7);
  EXPECT_EQ(it.event->user_id, 42);
  EXPECT_EQ(it.event->question_id, 3);
  EXPECT_EQ(it.event->option_id, 1);
  EXPECT_EQ(it.event->answered_at_ms, utc_ms(2026, 3, 1, 10, 0, 0, 123));
  EXPECT_EQ(it.event->elapsed_ms, 1500);
  EXPECT_EQ(it.event_id(), "ev-1");
}

TEST(Decoder, FieldOrderDoesNotMatter) {
  Fields f = base_fields();
  std::reverse(f.begin(), f.end());
  const Item a = decode_answer_json(to_json(f));
  const Item b = decode_answer_json(to_json(base_fields()));
  ASSERT_TRUE(a.event && b.event);
  EXPECT_EQ(a.event->event_id, b.event->event_id);
  EXPECT_EQ(a.event->quiz_id, b.event->quiz_id);
  EXPECT_EQ(a.event->user_id, b.event->user_id);
  EXPECT_EQ(a.event->question_id, b.event->question_id);
  EXPECT_EQ(a.event->option_id, b.event->option_id);
  EXPECT_EQ(a.event->answered_at_ms, b.event->answered_at_ms);
  EXPECT_EQ(a.event->elapsed_ms, b.event->elapsed_ms);
}

TEST(Decoder, WhitespaceAroundTokensIsAllowed) {
  const std::string json =
      " \n{ \"event_id\" : \"ev-1\" ,\t\"quiz_id\":7,\"user_id\":42,\"question_id\":3,"
      "\"option_id\":1,\"answered_at\":\"2026-03-01T10:00:00Z\",\"elapsed_ms\":0 }\r\n ";
  expect_decodes(json);
}

// ---------------------------------------------------------------------------------------------
// event_id: 1-64 characters of [A-Za-z0-9._:-]

TEST(Decoder, EventIdAcceptsEveryAllowedCharacterAndLengthBounds) {
  const std::string allowed = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-";
  ASSERT_EQ(allowed.size(), 66u);
  for (const std::string& id :
       {allowed.substr(0, 64), allowed.substr(2, 64), std::string("x"), std::string("."),
        std::string("-"), std::string(":"), std::string("_"), std::string(64, 'z')}) {
    const Item it = decode_answer_json(answer_json("event_id", "\"" + id + "\""));
    ASSERT_TRUE(it.event.has_value()) << id;
    EXPECT_EQ(it.event->event_id, id);
  }
}

TEST(Decoder, EventIdRejectsBadCharactersLengthsAndTypes) {
  const std::vector<std::string> bad = {
      "\"\"",
      "\"" + std::string(65, 'a') + "\"",
      "\"" + std::string(1000, 'a') + "\"",
      "\"a b\"",
      "\"a/b\"",
      "\"a+b\"",
      "\"a@b\"",
      "\"a#b\"",
      "\"a,b\"",
      "\"a\\\"b\"",
      "\"a\\\\b\"",
      "\"a\\nb\"",
      "\"a\\u0000b\"",
      "\"\\u0000\"",
      "\"caf\\u00e9\"",
      "\"caf\xc3\xa9\"",
      "\"ev-1\\u0020\"",
      "5",
      "1.5",
      "true",
      "null",
      "[\"ev-1\"]",
      "{\"id\":\"ev-1\"}",
  };
  for (const auto& raw : bad) {
    const std::string json = answer_json("event_id", raw);
    expect_schema(decode_answer_json(json), "event_id", json);
  }
}

// ---------------------------------------------------------------------------------------------
// Integer fields

const std::vector<std::string> kNonIntegers = {"1.0",   "1e2",  "1E0", "0.5", "\"1\"",     "true",
                                               "false", "null", "[1]", "{}",  "{\"v\":1}", "\"\""};

TEST(Decoder, QuizAndUserIdRange) {
  for (const std::string field : {"quiz_id", "user_id"}) {
    for (const auto& [raw, want] : std::vector<std::pair<std::string, int64_t>>{
             {"1", 1}, {"9223372036854775807", INT64_MAX}, {"123456789012", 123456789012}}) {
      const Item it = decode_answer_json(answer_json(field, raw));
      ASSERT_TRUE(it.event.has_value()) << field << "=" << raw;
      EXPECT_EQ(field == "quiz_id" ? it.event->quiz_id : it.event->user_id, want);
    }
    std::vector<std::string> bad = {"0",
                                    "-1",
                                    "-9223372036854775808",
                                    "9223372036854775808",
                                    "18446744073709551615",
                                    "18446744073709551616",
                                    "99999999999999999999999999"};
    bad.insert(bad.end(), kNonIntegers.begin(), kNonIntegers.end());
    for (const auto& raw : bad) {
      const std::string json = answer_json(field, raw);
      expect_schema(decode_answer_json(json), field, json);
    }
  }
}

TEST(Decoder, QuestionIdRange) {
  for (const auto& [raw, want] :
       std::vector<std::pair<std::string, int32_t>>{{"1", 1}, {"2147483647", 2147483647}}) {
    const Item it = decode_answer_json(answer_json("question_id", raw));
    ASSERT_TRUE(it.event.has_value()) << raw;
    EXPECT_EQ(it.event->question_id, want);
  }
  std::vector<std::string> bad = {
      "0",          "-1",          "2147483648",          "4294967296",
      "4294967297", "-2147483648", "9223372036854775807", "18446744073709551616"};
  bad.insert(bad.end(), kNonIntegers.begin(), kNonIntegers.end());
  for (const auto& raw : bad) {
    const std::string json = answer_json("question_id", raw);
    expect_schema(decode_answer_json(json), "question_id", json);
  }
}

TEST(Decoder, OptionAndElapsedMustBeIntegers) {
  for (const std::string field : {"option_id", "elapsed_ms"}) {
    // The range is checked by validate against the quiz (option_out_of_range,
    // elapsed_out_of_range), so any 64-bit integer decodes and is carried through unchanged.
    for (const auto& [raw, want] : std::vector<std::pair<std::string, int64_t>>{
             {"0", 0}, {"9", 9}, {"-1", -1}, {"600001", 600001}}) {
      const Item it = decode_answer_json(answer_json(field, raw));
      ASSERT_TRUE(it.event.has_value()) << field << "=" << raw;
      EXPECT_EQ(field == "option_id" ? it.event->option_id : it.event->elapsed_ms, want);
    }
    std::vector<std::string> bad = {"18446744073709551616", "9223372036854775808"};
    bad.insert(bad.end(), kNonIntegers.begin(), kNonIntegers.end());
    for (const auto& raw : bad) {
      const std::string json = answer_json(field, raw);
      expect_schema(decode_answer_json(json), field, json);
    }
  }
}

TEST(Decoder, NumberTooBigForADoubleIsRejectedWithoutAnEvent) {
  // 1e400 overflows a double; whether reported as a schema error or malformed JSON, it must be a
  // clean rejection.
  for (const std::string field : {"quiz_id", "user_id", "question_id", "option_id", "elapsed_ms"}) {
    for (const std::string& raw :
         {std::string("1e400"), std::string("-1e400"), "1" + std::string(400, '0')}) {
      const std::string json = answer_json(field, raw);
      const Item it = decode_answer_json(json);
      expect_rejected(it, json);
      EXPECT_TRUE(it.verdict.code == "schema" || it.verdict.code == "malformed_json")
          << it.verdict.code;
      if (it.verdict.code == "schema") {
        EXPECT_EQ(it.verdict.field, field);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Missing, unknown and repeated fields

TEST(Decoder, MissingFieldIsNamed) {
  for (const auto& [name, raw] : base_fields()) {
    const std::string json = to_json(without(base_fields(), name));
    expect_schema(decode_answer_json(json), name, json);
  }
}

TEST(Decoder, EmptyObjectNamesARequiredField) {
  const Item it = decode_answer_json("{}");
  expect_rejected(it, "{}");
  EXPECT_EQ(it.verdict.code, "schema");
  bool known = false;
  for (const auto& [name, raw] : base_fields()) known = known || it.verdict.field == name;
  EXPECT_TRUE(known) << it.verdict.field;
}

TEST(Decoder, UnknownFieldIsRejectedAndNamed) {
  for (const std::string name :
       {"extra", "Event_ID", "quizId", "event_id ", "points", "correct", "answers"}) {
    Fields f = base_fields();
    f.emplace_back(name, "1");
    const std::string json = to_json(f);
    expect_schema(decode_answer_json(json), name, json);
    // Also when the unknown field comes first.
    Fields g = base_fields();
    g.insert(g.begin(), {name, "\"x\""});
    const std::string json2 = to_json(g);
    expect_schema(decode_answer_json(json2), name, json2);
  }
}

TEST(Decoder, FieldGivenTwiceIsRejected) {
  for (const auto& [name, raw] : base_fields()) {
    Fields f = base_fields();
    f.emplace_back(name, raw);  // identical value repeated
    const std::string json = to_json(f);
    expect_schema(decode_answer_json(json), name, json);
  }
}

// ---------------------------------------------------------------------------------------------
// answered_at

TEST(Decoder, AnsweredAtKeepsMillisecondsAndAppliesTheZone) {
  const std::vector<std::pair<std::string, int64_t>> cases = {
      {"2026-03-01T10:00:00Z", utc_ms(2026, 3, 1, 10, 0, 0)},
      {"2026-03-01T10:00:00.123Z", utc_ms(2026, 3, 1, 10, 0, 0, 123)},
      {"2026-03-01T10:00:00.001Z", utc_ms(2026, 3, 1, 10, 0, 0, 1)},
      {"2026-03-01T10:00:00.5Z", utc_ms(2026, 3, 1, 10, 0, 0, 500)},
      {"2026-03-01T10:00:00.120Z", utc_ms(2026, 3, 1, 10, 0, 0, 120)},
      {"2026-03-01T10:00:00.999999Z", utc_ms(2026, 3, 1, 10, 0, 0, 999)},
      {"2026-03-01T15:30:00.250+05:30", utc_ms(2026, 3, 1, 10, 0, 0, 250)},
      {"2026-03-01T02:00:00-08:00", utc_ms(2026, 3, 1, 10, 0, 0)},
      {"2026-03-01T10:00:00+00:00", utc_ms(2026, 3, 1, 10, 0, 0)},
      {"2026-03-01t10:00:00z", utc_ms(2026, 3, 1, 10, 0, 0)},
      {"2024-02-29T23:59:59.999Z", utc_ms(2024, 2, 29, 23, 59, 59, 999)},
      {"2026-01-01T00:30:00+01:00", utc_ms(2025, 12, 31, 23, 30, 0)},
  };
  for (const auto& [text, want] : cases) {
    const Item it = decode_answer_json(answer_json("answered_at", "\"" + text + "\""));
    ASSERT_TRUE(it.event.has_value()) << text;
    EXPECT_EQ(it.event->answered_at_ms, want) << text;
  }
}

TEST(Decoder, AnsweredAtRejectsBadTimestamps) {
  const std::vector<std::string> bad = {
      "\"2026-02-30T10:00:00Z\"",       // no such date
      "\"2025-02-29T10:00:00Z\"",       // not a leap year
      "\"1900-02-29T10:00:00Z\"",       // century, not a leap year
      "\"2026-04-31T10:00:00Z\"",       // April has 30 days
      "\"2026-13-01T10:00:00Z\"",       // month 13
      "\"2026-00-01T10:00:00Z\"",       // month 0
      "\"2026-03-00T10:00:00Z\"",       // day 0
      "\"2026-03-01T24:00:00Z\"",       // hour 24
      "\"2026-03-01T10:60:00Z\"",       // minute 60
      "\"2026-03-01T10:00:61Z\"",       // second 61
      "\"2026-03-01T10:00:00\"",        // no zone
      "\"2026-03-01T10:00:00.123\"",    // no zone
      "\"2026-03-01\"",                 // date only
      "\"10:00:00Z\"",                  // time only
      "\"2026-03-01T10:00Z\"",          // no seconds
      "\"2026-03-01T10:00:00+0530\"",   // offset without colon
      "\"2026-03-01T10:00:00+05\"",     // offset without minutes
      "\"2026-03-01T10:00:00+24:00\"",  // offset hour 24
      "\"2026-03-01T10:00:00.Z\"",      // empty fraction
      "\"2026-03-01T10:00:00Z \"",      // trailing space
      "\" 2026-03-01T10:00:00Z\"",      // leading space
      "\"2026-03-01T10:00:00ZZ\"",      // trailing garbage
      "\"2026-3-1T10:00:00Z\"",         // missing zero padding
      "\"2026/03/01T10:00:00Z\"",       // wrong separators
      "\"garbage\"",
      "\"\"",
      "\"2026-03-01T10:00:00Z\\u0000\"",  // escaped NUL
      "1772359200000",                    // epoch number
      "null",
      "true",
      "[\"2026-03-01T10:00:00Z\"]",
  };
  for (const auto& raw : bad) {
    const std::string json = answer_json("answered_at", raw);
    expect_schema(decode_answer_json(json), "answered_at", json);
  }
}

// ---------------------------------------------------------------------------------------------
// Malformed and hostile bodies

TEST(Decoder, MalformedJsonIsRejected) {
  const std::string good = to_json(base_fields());
  const std::vector<std::string> bad = {
      "",
      " ",
      "{",
      "}",
      "{\"event_id\":}",
      "{\"event_id\":\"ev-1\",}",
      "{'event_id':'ev-1'}",
      "{event_id:\"ev-1\"}",
      good.substr(0, good.size() - 1),
      good + "x",
      good + "}",
      good + good,
      good + " 1",
      "/*c*/" + good,
      good + "//c",
      "\"unterminated",
      "{\"quiz_id\":01}",
      "{\"quiz_id\":+1}",
      "{\"quiz_id\":0x10}",
      "{\"quiz_id\":NaN}",
      "{\"quiz_id\":Infinity}",
  };
  for (const auto& json : bad) {
    const Item it = decode_answer_json(json);
    expect_rejected(it, json);
    EXPECT_EQ(it.verdict.code, "malformed_json") << json;
  }
}

TEST(Decoder, NonObjectJsonIsRejected) {
  for (const std::string& json :
       {std::string("[]"), "[" + to_json(base_fields()) + "]", std::string("1"),
        std::string("\"ev-1\""), std::string("null"), std::string("true")}) {
    expect_rejected(decode_answer_json(json), json);
  }
}

TEST(Decoder, EscapedNulInsideStringsIsRejected) {
  const std::string json = answer_json("event_id", "\"ev\\u00001\"");
  expect_schema(decode_answer_json(json), "event_id", json);
}

TEST(Decoder, RawNulInsideAStringIsRejected) {
  std::string json = answer_json("event_id", "\"evX1\"");
  json[json.find("evX1") + 2] = '\0';
  expect_rejected(decode_answer_json(json), "raw NUL inside event_id");
}

TEST(Decoder, RawNulBeforeTheBodyIsRejected) {
  const std::string json = std::string(1, '\0') + to_json(base_fields());
  const Item it = decode_answer_json(json);
  expect_rejected(it, "NUL + valid answer");
}

TEST(Decoder, RawNulFollowedByGarbageAfterTheBodyIsRejected) {
  // Trailing content after the JSON value makes the body malformed, even when a NUL byte sits
  // between them (a parser treating NUL as end of input would accept this).
  const std::string json = to_json(base_fields()) + std::string(1, '\0') + "garbage";
  const Item it = decode_answer_json(json);
  EXPECT_FALSE(it.event.has_value()) << "a body with bytes after a NUL decoded as a valid answer";
  EXPECT_EQ(it.verdict.status, ItemStatus::rejected);
  EXPECT_EQ(it.verdict.code, "malformed_json");
}

TEST(Decoder, InvalidUtf8IsRejected) {
  // In a value: never decodes (event_id's charset is ASCII only).
  for (const std::string raw :
       {"\"ev\xff\"", "\"ev\xc0\xaf\"", "\"ev\xed\xa0\x80\"", "\"\xe2\x82\"", "\"\x80\""}) {
    const std::string json = answer_json("event_id", raw);
    expect_rejected(decode_answer_json(json), "invalid UTF-8 in event_id");
  }
  for (const std::string raw : {"\"2026-03-01T10:00:00\xffZ\"", "\"2026-03-01T10:00:00Z\xc3\""}) {
    const std::string json = answer_json("answered_at", raw);
    expect_rejected(decode_answer_json(json), "invalid UTF-8 in answered_at");
  }
  // Outside strings.
  expect_rejected(decode_answer_json("\xff\xfe{}"), "UTF-16 BOM bytes");
  expect_rejected(decode_answer_json("{\xff:1}"), "invalid byte as a key");
  // (A UTF-8 BOM before the object may be ignored: RFC 8259 §8.1 allows it.)
}

TEST(Decoder, InvalidUtf8FieldNameIsRejectedAndTheErrorStaysValidUtf8) {
  // The error's field and message end up in a JSON error body; they must not carry the invalid
  // bytes of the input.
  Fields f = base_fields();
  f.emplace_back("bad\xff\xfe", "1");
  const std::string json = to_json(f);
  const Item it = decode_answer_json(json);
  expect_rejected(it, "invalid UTF-8 in a field name");
  EXPECT_TRUE(valid_utf8(it.verdict.field)) << "field holds invalid UTF-8";
  EXPECT_TRUE(valid_utf8(it.verdict.message)) << "message holds invalid UTF-8";
  EXPECT_TRUE(valid_utf8(it.echo_id));
}

TEST(Decoder, DeepNestingReturnsAnErrorWithoutCrashing) {
  const size_t depth = 100000;
  const std::string arrays = std::string(depth, '[') + std::string(depth, ']');
  expect_rejected(decode_answer_json(arrays), "100000 nested arrays");
  expect_rejected(decode_answer_json(std::string(depth, '[')), "100000 unclosed arrays");

  std::string objects;
  for (size_t i = 0; i < depth; ++i) objects += "{\"a\":";
  objects += "1" + std::string(depth, '}');
  expect_rejected(decode_answer_json(objects), "100000 nested objects");

  // As a field value.
  const std::string json = answer_json("event_id", arrays);
  expect_schema(decode_answer_json(json), "event_id", "event_id = 100000 nested arrays");
}

TEST(Decoder, HugeStringsAreRejected) {
  const std::string json = answer_json("event_id", "\"" + std::string(1 << 20, 'a') + "\"");
  expect_schema(decode_answer_json(json), "event_id", "1 MiB event_id");
  Fields f = base_fields();
  f.emplace_back(std::string(100000, 'k'), "1");
  const Item it = decode_answer_json(to_json(f));
  expect_rejected(it, "100000-char field name");
}

// ---------------------------------------------------------------------------------------------
// ingest(): single object and {"answers":[...]}

std::string answer_with(const std::string& event_id, int64_t user) {
  return to_json(with(with(base_fields(), "event_id", "\"" + event_id + "\""), "user_id",
                      std::to_string(user)));
}

TEST(Ingest, SingleObject) {
  Request r(to_json(base_fields()), nullptr);
  EXPECT_EQ(ingest(r, IngestLimits{}), 1u);
  EXPECT_FALSE(r.error.has_value());
  EXPECT_TRUE(r.single);
  ASSERT_EQ(r.items.size(), 1u);
  ASSERT_TRUE(r.items[0].event.has_value());
  EXPECT_EQ(r.items[0].event->event_id, "ev-1");
}

TEST(Ingest, SingleInvalidObjectIsAnItemRejectionNotARequestError) {
  Request r(answer_json("quiz_id", "\"7\""), nullptr);
  EXPECT_EQ(ingest(r, IngestLimits{}), 0u);
  EXPECT_FALSE(r.error.has_value());
  EXPECT_TRUE(r.single);
  ASSERT_EQ(r.items.size(), 1u);
  expect_schema(r.items[0], "quiz_id", r.body);
  EXPECT_EQ(r.items[0].event_id(), "ev-1");
}

TEST(Ingest, BatchKeepsInputOrderAndDecodesTheValidItems) {
  const std::string body =
      "{\"answers\":[" + answer_with("a-1", 1) + "," +
      to_json(with(with(base_fields(), "event_id", "\"a-2\""), "quiz_id", "1.0")) + "," +
      answer_with("a-3", 3) + ",5," +
      to_json(with(base_fields(), "event_id", "\"a-5\"")).insert(1, "\"x\":1,") + "," +
      to_json(without(with(base_fields(), "event_id", "\"a-6\""), "elapsed_ms")) + "," +
      answer_with("a-7", 7) + "]}";
  Request r(body, nullptr);
  EXPECT_EQ(ingest(r, IngestLimits{}), 3u);
  ASSERT_FALSE(r.error.has_value()) << r.error->message;
  EXPECT_FALSE(r.single);
  ASSERT_EQ(r.items.size(), 7u);

  ASSERT_TRUE(r.items[0].event.has_value());
  EXPECT_EQ(r.items[0].event->event_id, "a-1");
  EXPECT_EQ(r.items[0].event->user_id, 1);

  expect_schema(r.items[1], "quiz_id", "item 1");
  EXPECT_EQ(r.items[1].echo_id, "a-2");
  EXPECT_EQ(r.items[1].event_id(), "a-2");

  ASSERT_TRUE(r.items[2].event.has_value());
  EXPECT_EQ(r.items[2].event->event_id, "a-3");
  EXPECT_EQ(r.items[2].event->user_id, 3);

  expect_rejected(r.items[3], "item 3 (a number)");
  EXPECT_EQ(r.items[3].verdict.code, "schema");
  EXPECT_EQ(r.items[3].event_id(), "");

  expect_schema(r.items[4], "x", "item 4");
  EXPECT_EQ(r.items[4].event_id(), "a-5");

  expect_schema(r.items[5], "elapsed_ms", "item 5");
  EXPECT_EQ(r.items[5].event_id(), "a-6");

  ASSERT_TRUE(r.items[6].event.has_value());
  EXPECT_EQ(r.items[6].event->event_id, "a-7");
  for (const auto& it : r.items) {
    if (it.event) {
      EXPECT_EQ(it.verdict.status, ItemStatus::pending);
    }
  }
}

TEST(Ingest, RejectedItemEchoesOnlyAValidEventId) {
  const std::string bad_id_items[] = {
      to_json(with(with(base_fields(), "event_id", "\"has space\""), "quiz_id", "0")),
      to_json(with(base_fields(), "event_id", "7")),
      to_json(with(base_fields(), "event_id", "\"" + std::string(65, 'e') + "\"")),
      to_json(with(with(base_fields(), "event_id", "\"" + std::string(65, 'e') + "\""), "quiz_id",
                   "0")),
      to_json(with(base_fields(), "event_id", "\"bad\\u0000id\"")),
  };
  for (const auto& item : bad_id_items) {
    Request r("{\"answers\":[" + item + "]}", nullptr);
    ingest(r, IngestLimits{});
    ASSERT_EQ(r.items.size(), 1u) << item;
    expect_rejected(r.items[0], item.substr(0, 120));
    // The given id is invalid: the echo must not invent a different (e.g. truncated) id that
    // could belong to another answer.
    EXPECT_EQ(r.items[0].event_id(), "") << item.substr(0, 120);
  }
  // A valid event_id is echoed exactly, whatever else is wrong.
  const std::string id64(64, 'Q');
  Request r("{\"answers\":[" +
                to_json(with(with(base_fields(), "event_id", "\"" + id64 + "\""), "user_id", "0")) +
                "]}",
            nullptr);
  ingest(r, IngestLimits{});
  ASSERT_EQ(r.items.size(), 1u);
  EXPECT_EQ(r.items[0].event_id(), id64);
}

TEST(Ingest, AnswersNotAnArrayIsARequestError) {
  for (const std::string v : {"{}", "\"x\"", "null", "1", "true", "{\"answers\":[]}"}) {
    Request r("{\"answers\":" + v + "}", nullptr);
    EXPECT_EQ(ingest(r, IngestLimits{}), 0u);
    ASSERT_TRUE(r.error.has_value()) << v;
    EXPECT_EQ(r.error->http_status, 400) << v;
    EXPECT_EQ(r.error->field, "answers") << v;
    EXPECT_TRUE(r.items.empty());
  }
}

TEST(Ingest, TooManyAnswersIs413) {
  auto body = [](size_t n) {
    std::string s = "{\"answers\":[";
    for (size_t i = 0; i < n; ++i) {
      if (i) s += ',';
      std::string id = "t-";
      id += std::to_string(i);
      s += answer_with(id, 1);
    }
    return s + "]}";
  };
  {
    Request r(body(4), nullptr);
    EXPECT_EQ(ingest(r, IngestLimits{3}), 0u);
    ASSERT_TRUE(r.error.has_value());
    EXPECT_EQ(r.error->http_status, 413);
    EXPECT_EQ(r.error->code, "too_many_answers");
    EXPECT_TRUE(r.items.empty());
  }
  {
    Request r(body(3), nullptr);
    EXPECT_EQ(ingest(r, IngestLimits{3}), 3u);
    EXPECT_FALSE(r.error.has_value());
    ASSERT_EQ(r.items.size(), 3u);
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(r.items[i].event_id(), "t-" + std::to_string(i));
  }
  {
    // Counted in items, not bytes: many invalid items count too.
    Request r("{\"answers\":[1,2,3,4]}", nullptr);
    ingest(r, IngestLimits{3});
    ASSERT_TRUE(r.error.has_value());
    EXPECT_EQ(r.error->http_status, 413);
  }
}

TEST(Ingest, EmptyAnswersArrayHasNoItems) {
  Request r("{\"answers\":[]}", nullptr);
  EXPECT_EQ(ingest(r, IngestLimits{}), 0u);
  EXPECT_FALSE(r.error.has_value());
  EXPECT_FALSE(r.single);
  EXPECT_TRUE(r.items.empty());
}

TEST(Ingest, UnknownFieldBesideAnswersIsARequestError) {
  Request r("{\"answers\":[" + to_json(base_fields()) + "],\"extra\":1}", nullptr);
  EXPECT_EQ(ingest(r, IngestLimits{}), 0u);
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->http_status, 400);
  EXPECT_TRUE(r.items.empty());
}

TEST(Ingest, RequestLevelProblemsAre400WithNoItems) {
  const std::string good = to_json(base_fields());
  const std::vector<std::string> bodies = {
      "",
      "   ",
      "not json",
      good + " trailing",
      good + good,
      "{\"answers\":[" + good + "]} x",
      "[" + good + "]",
      "1",
      "\"x\"",
      "null",
      std::string(100000, '['),
      std::string(100000, '[') + std::string(100000, ']'),
      "\xff\xfe\xfd",
  };
  for (const auto& b : bodies) {
    Request r(b, nullptr);
    EXPECT_EQ(ingest(r, IngestLimits{}), 0u) << b.substr(0, 60);
    ASSERT_TRUE(r.error.has_value()) << b.substr(0, 60);
    EXPECT_EQ(r.error->http_status, 400) << b.substr(0, 60);
    EXPECT_FALSE(r.error->code.empty());
    EXPECT_TRUE(r.items.empty());
  }
}

TEST(Ingest, MalformedJsonCode) {
  Request r("{\"answers\":[", nullptr);
  ingest(r, IngestLimits{});
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->code, "malformed_json");
}

TEST(Ingest, RawNulThenGarbageAfterTheBodyIsARequestError) {
  const std::string body =
      "{\"answers\":[" + to_json(base_fields()) + "]}" + std::string(1, '\0') + "{\"more\":1}";
  Request r(body, nullptr);
  const size_t n = ingest(r, IngestLimits{});
  EXPECT_TRUE(r.error.has_value())
      << "body with bytes after a NUL was accepted (" << n << " answers decoded)";
  EXPECT_TRUE(r.items.empty());
}

TEST(Ingest, DeeplyNestedItemIsRejectedPerItem) {
  const std::string nested = std::string(100000, '[') + std::string(100000, ']');
  Request r("{\"answers\":[" + answer_with("d-1", 1) + "," + nested + "]}", nullptr);
  EXPECT_EQ(ingest(r, IngestLimits{}), 1u);
  ASSERT_FALSE(r.error.has_value());
  ASSERT_EQ(r.items.size(), 2u);
  ASSERT_TRUE(r.items[0].event.has_value());
  EXPECT_EQ(r.items[0].event->event_id, "d-1");
  expect_rejected(r.items[1], "nested item");
}

// Random mutations of a valid batch: ingest never throws, and its result is always coherent.
TEST(Ingest, RandomMutationsNeverThrowAndStayCoherent) {
  const std::string seed_body =
      "{\"answers\":[" + answer_with("m-1", 1) + "," + answer_with("m-2", 2) + "]}";
  std::mt19937 rng(12345);
  static const char kAlphabet[] = "{}[]\",:0123456789.-eE+tfnul\\ \x00\xff\xc3zZT";
  const std::string alphabet(kAlphabet, sizeof kAlphabet - 1);
  for (int round = 0; round < 20000; ++round) {
    std::string body = seed_body;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % (body.size() + 1);
      switch (rng() % 3) {
        case 0:
          if (pos < body.size()) body.erase(pos, 1 + rng() % 3);
          break;
        case 1:
          body.insert(pos, 1, alphabet[rng() % alphabet.size()]);
          break;
        default:
          if (pos < body.size()) body[pos] = alphabet[rng() % alphabet.size()];
          break;
      }
    }
    Request r(body, nullptr);
    size_t n = 0;
    ASSERT_NO_THROW(n = ingest(r, IngestLimits{})) << body;
    if (r.error) {
      EXPECT_TRUE(r.items.empty()) << body;
      EXPECT_EQ(n, 0u);
      continue;
    }
    size_t decoded = 0;
    for (const auto& it : r.items) {
      if (it.event) {
        ++decoded;
        EXPECT_EQ(it.verdict.status, ItemStatus::pending) << body;
        EXPECT_EQ(it.event_id(), it.event->event_id);
      } else {
        EXPECT_EQ(it.verdict.status, ItemStatus::rejected) << body;
        EXPECT_FALSE(it.verdict.code.empty()) << body;
      }
    }
    EXPECT_EQ(n, decoded) << body;
  }
}

}  // namespace
}  // namespace quizflow::stages
