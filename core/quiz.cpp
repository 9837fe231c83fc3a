#include "core/quiz.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <charconv>
#include <set>

#include "core/json_input.h"
#include "core/time_util.h"

namespace quizflow {

const Question* QuizDef::find_question(int32_t question_id) const {
  auto it = std::lower_bound(questions.begin(), questions.end(), question_id,
                             [](const Question& q, int32_t id) { return q.question_id < id; });
  return it != questions.end() && it->question_id == question_id ? &*it : nullptr;
}

const char* to_string(QuizState s) {
  switch (s) {
    case QuizState::open:
      return "open";
    case QuizState::closed:
      return "closed";
    case QuizState::finalized:
      return "finalized";
  }
  return "open";
}

std::optional<QuizState> quiz_state_of(std::string_view s) {
  if (s == "open") return QuizState::open;
  if (s == "closed") return QuizState::closed;
  if (s == "finalized") return QuizState::finalized;
  return std::nullopt;
}

namespace {

constexpr int64_t kMaxInt63 = INT64_MAX;

struct Err {
  std::string message;
  std::string field;
};

bool get_int(const rapidjson::Value& obj, const char* name, const std::string& path, int64_t lo,
             int64_t hi, int64_t& out, Err& err, std::optional<int64_t> def = std::nullopt) {
  auto it = obj.FindMember(name);
  const std::string field = path + name;
  if (it == obj.MemberEnd()) {
    if (def) {
      out = *def;
      return true;
    }
    err = {"missing required field", field};
    return false;
  }
  if (!it->value.IsInt64()) {
    err = {"must be an integer", field};
    return false;
  }
  const int64_t v = it->value.GetInt64();
  if (v < lo || v > hi) {
    err = {"must be between " + std::to_string(lo) + " and " + std::to_string(hi), field};
    return false;
  }
  out = v;
  return true;
}

bool check_known(const rapidjson::Value& obj, std::initializer_list<const char*> names,
                 const std::string& path, Err& err) {
  for (auto m = obj.MemberBegin(); m != obj.MemberEnd(); ++m) {
    const std::string_view n(m->name.GetString(), m->name.GetStringLength());
    if (std::none_of(names.begin(), names.end(), [&](const char* k) { return n == k; })) {
      err = {"unknown field", path + std::string(n)};
      return false;
    }
  }
  return true;
}

bool get_time(const rapidjson::Value& obj, const char* name, int64_t& out, Err& err) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd()) {
    err = {"missing required field", name};
    return false;
  }
  if (!it->value.IsString()) {
    err = {"must be an RFC 3339 timestamp string", name};
    return false;
  }
  auto ms = parse_rfc3339_ms({it->value.GetString(), it->value.GetStringLength()});
  if (!ms) {
    err = {"must be an RFC 3339 timestamp with zone", name};
    return false;
  }
  out = *ms;
  return true;
}

bool decode_into(const rapidjson::Value& d, QuizDef& q, Err& err) {
  if (!d.IsObject()) {
    err = {"quiz must be a JSON object", ""};
    return false;
  }
  if (!check_known(d, {"quiz_id", "title", "opens_at", "closes_at", "questions", "rewards"}, "",
                   err))
    return false;
  if (!get_int(d, "quiz_id", "", 1, kMaxInt63, q.quiz_id, err)) return false;
  auto t = d.FindMember("title");
  if (t == d.MemberEnd() || !t->value.IsString()) {
    err = {"must be a string", "title"};
    return false;
  }
  q.title.assign(t->value.GetString(), t->value.GetStringLength());
  if (q.title.empty() || q.title.size() > 200 || q.title.find('\0') != std::string::npos) {
    err = {"must be 1-200 characters without NUL", "title"};
    return false;
  }
  if (!get_time(d, "opens_at", q.opens_at_ms, err)) return false;
  if (!get_time(d, "closes_at", q.closes_at_ms, err)) return false;
  if (q.opens_at_ms >= q.closes_at_ms) {
    err = {"must be after opens_at", "closes_at"};
    return false;
  }
  auto qs = d.FindMember("questions");
  if (qs == d.MemberEnd() || !qs->value.IsArray()) {
    err = {"must be an array", "questions"};
    return false;
  }
  if (qs->value.Size() < 1 || qs->value.Size() > 500) {
    err = {"must hold 1-500 questions", "questions"};
    return false;
  }
  std::set<int32_t> ids;
  for (rapidjson::SizeType i = 0; i < qs->value.Size(); ++i) {
    const auto& e = qs->value[i];
    const std::string path = "questions[" + std::to_string(i) + "].";
    if (!e.IsObject()) {
      err = {"must be an object", "questions[" + std::to_string(i) + "]"};
      return false;
    }
    if (!check_known(e,
                     {"question_id", "option_count", "correct_option", "points", "time_limit_ms"},
                     path, err))
      return false;
    Question qu;
    int64_t v;
    if (!get_int(e, "question_id", path, 1, INT32_MAX, v, err)) return false;
    qu.question_id = static_cast<int32_t>(v);
    if (!get_int(e, "option_count", path, 2, 10, v, err)) return false;
    qu.option_count = static_cast<int32_t>(v);
    if (!get_int(e, "correct_option", path, 0, qu.option_count - 1, v, err)) return false;
    qu.correct_option = static_cast<int32_t>(v);
    if (!get_int(e, "points", path, 1, 100000, qu.points, err, 1000)) return false;
    if (!get_int(e, "time_limit_ms", path, 1000, 600000, qu.time_limit_ms, err, 20000))
      return false;
    if (!ids.insert(qu.question_id).second) {
      err = {"duplicate question_id", path + "question_id"};
      return false;
    }
    q.questions.push_back(qu);
  }
  std::sort(q.questions.begin(), q.questions.end(),
            [](const Question& a, const Question& b) { return a.question_id < b.question_id; });
  auto rw = d.FindMember("rewards");
  if (rw != d.MemberEnd()) {
    if (!rw->value.IsArray()) {
      err = {"must be an array", "rewards"};
      return false;
    }
    for (rapidjson::SizeType i = 0; i < rw->value.Size(); ++i) {
      const auto& e = rw->value[i];
      const std::string path = "rewards[" + std::to_string(i) + "].";
      if (!e.IsObject()) {
        err = {"must be an object", "rewards[" + std::to_string(i) + "]"};
        return false;
      }
      if (!check_known(e, {"rank_from", "rank_to", "reward"}, path, err)) return false;
      RewardTier r;
      if (!get_int(e, "rank_from", path, 1, kMaxInt63, r.rank_from, err)) return false;
      if (!get_int(e, "rank_to", path, r.rank_from, kMaxInt63, r.rank_to, err)) return false;
      auto txt = e.FindMember("reward");
      if (txt == e.MemberEnd() || !txt->value.IsString() || txt->value.GetStringLength() == 0 ||
          txt->value.GetStringLength() > 500) {
        err = {"must be a string of 1-500 characters", path + "reward"};
        return false;
      }
      r.reward.assign(txt->value.GetString(), txt->value.GetStringLength());
      q.rewards.push_back(std::move(r));
    }
    std::sort(q.rewards.begin(), q.rewards.end(),
              [](const RewardTier& a, const RewardTier& b) { return a.rank_from < b.rank_from; });
    for (size_t i = 1; i < q.rewards.size(); ++i) {
      if (q.rewards[i].rank_from <= q.rewards[i - 1].rank_to) {
        err = {"reward tiers overlap", "rewards"};
        return false;
      }
    }
  }
  return true;
}

}  // namespace

QuizDecodeResult decode_quiz(std::string_view json) {
  QuizDecodeResult r;
  rapidjson::Document d;
  // Iterative parsing: deep nesting cannot exhaust the stack. Trailing content is an error.
  if (auto bad = misread_json(json, "input")) {
    r.code = "malformed_json";
    r.message = bad->message;
    return r;
  }
  d.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag>(json.data(),
                                                                                  json.size());
  if (d.HasParseError()) {
    r.code = "malformed_json";
    r.message = rapidjson::GetParseError_En(d.GetParseError());
    return r;
  }
  QuizDef q;
  Err err;
  if (!decode_into(d, q, err)) {
    r.code = "schema";
    r.message = err.message;
    r.field = err.field;
    return r;
  }
  r.quiz = std::move(q);
  return r;
}

std::string encode_quiz(const QuizDef& q) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("quiz_id");
  w.Int64(q.quiz_id);
  w.Key("title");
  w.String(q.title.data(), static_cast<rapidjson::SizeType>(q.title.size()));
  w.Key("opens_at");
  w.String(format_rfc3339_ms(q.opens_at_ms).c_str());
  w.Key("closes_at");
  w.String(format_rfc3339_ms(q.closes_at_ms).c_str());
  w.Key("questions");
  w.StartArray();
  for (const auto& x : q.questions) {
    w.StartObject();
    w.Key("question_id");
    w.Int(x.question_id);
    w.Key("option_count");
    w.Int(x.option_count);
    w.Key("correct_option");
    w.Int(x.correct_option);
    w.Key("points");
    w.Int64(x.points);
    w.Key("time_limit_ms");
    w.Int64(x.time_limit_ms);
    w.EndObject();
  }
  w.EndArray();
  w.Key("rewards");
  w.StartArray();
  for (const auto& r : q.rewards) {
    w.StartObject();
    w.Key("rank_from");
    w.Int64(r.rank_from);
    w.Key("rank_to");
    w.Int64(r.rank_to);
    w.Key("reward");
    w.String(r.reward.data(), static_cast<rapidjson::SizeType>(r.reward.size()));
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return {sb.GetString(), sb.GetSize()};
}

const QuizDef* CatalogSnapshot::find(int64_t quiz_id) const {
  auto it = quizzes.find(quiz_id);
  return it == quizzes.end() ? nullptr : it->second.get();
}

bool CatalogSnapshot::is_finalized(int64_t quiz_id) const {
  return std::binary_search(finalized->begin(), finalized->end(), quiz_id);
}

QuizState visible_state(QuizState stored, const QuizDef& q, int64_t now) {
  if (stored != QuizState::open) return stored;
  return now >= q.closes_at_ms ? QuizState::closed : QuizState::open;
}

QuizState CatalogSnapshot::state_of(const QuizDef& q, int64_t now) const {
  if (is_finalized(q.quiz_id)) return QuizState::finalized;
  auto it = states.find(q.quiz_id);
  return visible_state(it != states.end() ? it->second : QuizState::open, q, now);
}

void Catalog::set_state(int64_t quiz_id, QuizState s) {
  MutexLock lock(mu_);
  auto next = std::make_shared<CatalogSnapshot>(*snap_);
  if (s == QuizState::finalized) {
    if (next->is_finalized(quiz_id)) return;
    auto ids = std::make_shared<std::vector<int64_t>>(*next->finalized);
    ids->insert(std::upper_bound(ids->begin(), ids->end(), quiz_id), quiz_id);
    next->finalized = std::move(ids);
    next->quizzes.erase(quiz_id);
    next->states.erase(quiz_id);
  } else {
    next->states[quiz_id] = s;
  }
  snap_ = std::move(next);
}

std::shared_ptr<const CatalogSnapshot> Catalog::snapshot() const {
  MutexLock lock(mu_);
  return snap_;
}

void Catalog::put(const QuizDef& quiz) {
  MutexLock lock(mu_);
  if (snap_->is_finalized(quiz.quiz_id)) return;
  auto next = std::make_shared<CatalogSnapshot>(*snap_);
  next->quizzes[quiz.quiz_id] = std::make_shared<const QuizDef>(quiz);
  snap_ = std::move(next);
}

void Catalog::replace_all(std::vector<QuizRecord> live, std::vector<int64_t> finalized) {
  auto next = std::make_shared<CatalogSnapshot>();
  for (auto& r : live) {
    const int64_t id = r.def.quiz_id;
    if (r.state == QuizState::finalized) {
      finalized.push_back(id);
      continue;
    }
    if (r.state != QuizState::open) next->states[id] = r.state;
    next->quizzes[id] = std::make_shared<const QuizDef>(std::move(r.def));
  }
  std::sort(finalized.begin(), finalized.end());
  finalized.erase(std::unique(finalized.begin(), finalized.end()), finalized.end());
  next->finalized = std::make_shared<const std::vector<int64_t>>(std::move(finalized));
  MutexLock lock(mu_);
  snap_ = std::move(next);
}

}  // namespace quizflow
