#include "stages/ingest.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <charconv>
#include <cstring>

#include "core/json_input.h"
#include "core/time_util.h"

namespace quizflow::stages {
namespace {

constexpr int64_t kMaxInt31 = 2147483647;

enum Field : unsigned {
  kEventId = 1u << 0,
  kQuizId = 1u << 1,
  kUserId = 1u << 2,
  kQuestionId = 1u << 3,
  kOptionId = 1u << 4,
  kAnsweredAt = 1u << 5,
  kElapsed = 1u << 6,
  kAll = (1u << 7) - 1,
};

struct FieldName {
  const char* name;
  Field bit;
};
constexpr FieldName kFields[] = {{"event_id", kEventId},   {"quiz_id", kQuizId},
                                 {"user_id", kUserId},     {"question_id", kQuestionId},
                                 {"option_id", kOptionId}, {"answered_at", kAnsweredAt},
                                 {"elapsed_ms", kElapsed}};

bool valid_event_id(const char* s, size_t n) {
  if (n < 1 || n > 64) return false;
  for (size_t i = 0; i < n; ++i) {
    const char c = s[i];
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Integer field in [lo, hi]; out-of-range and non-integers are schema errors.
bool int_in(const rapidjson::Value& v, int64_t lo, int64_t hi, int64_t& out) {
  if (!v.IsInt64()) return false;
  out = v.GetInt64();
  return out >= lo && out <= hi;
}

Item decode_fields(const rapidjson::Value& v) {
  Item item;
  if (!v.IsObject()) {
    item.verdict = Verdict::reject("schema", "an answer must be a JSON object");
    return item;
  }
  AnswerEvent e;
  unsigned seen = 0;
  for (auto m = v.MemberBegin(); m != v.MemberEnd(); ++m) {
    const char* name = m->name.GetString();
    const size_t len = m->name.GetStringLength();
    const FieldName* f = nullptr;
    for (const auto& k : kFields)
      if (std::strlen(k.name) == len && std::memcmp(k.name, name, len) == 0) f = &k;
    const std::string fname(name, strnlen(name, len));
    if (!f) {
      item.verdict = Verdict::reject("schema", "unknown field", fname);
      return item;
    }
    if (seen & f->bit) {
      item.verdict = Verdict::reject("schema", "field given twice", fname);
      return item;
    }
    seen |= f->bit;
    const rapidjson::Value& x = m->value;
    int64_t n = 0;
    switch (f->bit) {
      case kEventId:
        if (!x.IsString() || !valid_event_id(x.GetString(), x.GetStringLength())) {
          item.verdict =
              Verdict::reject("schema", "must be 1-64 characters of [A-Za-z0-9._:-]", fname);
          return item;
        }
        e.event_id.assign(x.GetString(), x.GetStringLength());
        break;
      case kQuizId:
      case kUserId:
        if (!int_in(x, 1, INT64_MAX, n)) {
          item.verdict = Verdict::reject("schema", "must be an integer from 1 to 2^63-1", fname);
          return item;
        }
        (f->bit == kQuizId ? e.quiz_id : e.user_id) = n;
        break;
      case kQuestionId:
        if (!int_in(x, 1, kMaxInt31, n)) {
          item.verdict = Verdict::reject("schema", "must be an integer from 1 to 2^31-1", fname);
          return item;
        }
        e.question_id = static_cast<int32_t>(n);
        break;
      case kOptionId:
      case kElapsed:
        if (!x.IsInt64()) {
          item.verdict = Verdict::reject("schema", "must be an integer", fname);
          return item;
        }
        (f->bit == kOptionId ? e.option_id : e.elapsed_ms) = x.GetInt64();
        break;
      case kAnsweredAt: {
        if (!x.IsString()) {
          item.verdict = Verdict::reject("schema", "must be an RFC 3339 timestamp string", fname);
          return item;
        }
        auto ms = parse_rfc3339_ms({x.GetString(), x.GetStringLength()});
        if (!ms) {
          item.verdict =
              Verdict::reject("schema", "must be an RFC 3339 timestamp with zone", fname);
          return item;
        }
        e.answered_at_ms = *ms;
        break;
      }
      default:
        break;
    }
  }
  if (seen != kAll) {
    for (const auto& k : kFields) {
      if (!(seen & k.bit)) {
        item.verdict = Verdict::reject("schema", "missing required field", k.name);
        break;
      }
    }
    return item;
  }
  item.event = std::move(e);
  return item;
}

// The event_id to echo in the result of a rejected item: the given one when it is a string.
std::string echo_event_id(const rapidjson::Value& v) {
  if (!v.IsObject()) return {};
  auto it = v.FindMember("event_id");
  if (it == v.MemberEnd() || !it->value.IsString()) return {};
  const size_t n = it->value.GetStringLength();
  return valid_event_id(it->value.GetString(), n) ? std::string(it->value.GetString(), n)
                                                  : std::string();
}

Item decode_value(const rapidjson::Value& v) {
  Item item = decode_fields(v);
  if (!item.event) item.echo_id = echo_event_id(v);
  return item;
}

// Iterative: deep nesting cannot exhaust the stack. Encoding validated: error texts may echo
// field names, and they must stay valid UTF-8.
constexpr unsigned kParseFlags =
    rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag;

}  // namespace

Item decode_answer_json(std::string_view json) {
  if (auto bad = misread_json(json, "input")) {
    Item item;
    item.verdict = Verdict::reject("malformed_json", bad->message);
    return item;
  }
  rapidjson::Document d;
  d.Parse<kParseFlags>(json.data(), json.size());
  if (d.HasParseError()) {
    Item item;
    item.verdict =
        Verdict::reject("malformed_json", rapidjson::GetParseError_En(d.GetParseError()));
    return item;
  }
  return decode_value(d);
}

size_t ingest(Request& r, const IngestLimits& limits) {
  if (auto bad = misread_json(r.body, "body")) {
    r.error = RequestError{400, "malformed_json",
                           bad->message + " at offset " + std::to_string(bad->offset), ""};
    return 0;
  }
  rapidjson::Document d;
  d.Parse<kParseFlags>(r.body.data(), r.body.size());
  if (d.HasParseError()) {
    r.error = RequestError{400, "malformed_json",
                           std::string(rapidjson::GetParseError_En(d.GetParseError())) +
                               " at offset " + std::to_string(d.GetErrorOffset()),
                           ""};
    return 0;
  }
  if (!d.IsObject()) {
    r.error = RequestError{400, "invalid_request",
                           "body must be an answer object or {\"answers\":[...]}", ""};
    return 0;
  }
  auto answers = d.FindMember("answers");
  if (answers == d.MemberEnd()) {
    r.single = true;
    r.items.push_back(decode_value(d));
  } else {
    if (d.MemberCount() != 1) {
      for (auto m = d.MemberBegin(); m != d.MemberEnd(); ++m) {
        if (std::strcmp(m->name.GetString(), "answers") != 0) {
          r.error = RequestError{400, "schema", "unknown field beside answers",
                                 std::string(m->name.GetString())};
          return 0;
        }
      }
      r.error = RequestError{400, "schema", "field given twice", "answers"};
      return 0;
    }
    if (!answers->value.IsArray()) {
      r.error = RequestError{400, "schema", "must be an array", "answers"};
      return 0;
    }
    const auto& arr = answers->value;
    if (arr.Size() > limits.max_batch) {
      r.error = RequestError{413, "too_many_answers",
                             "at most " + std::to_string(limits.max_batch) + " answers per request",
                             "answers"};
      return 0;
    }
    r.items.reserve(arr.Size());
    for (const auto& v : arr.GetArray()) r.items.push_back(decode_value(v));
  }
  size_t ok = 0;
  for (auto& it : r.items) ok += it.event.has_value();
  return ok;
}

}  // namespace quizflow::stages
