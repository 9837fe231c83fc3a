#include "ingress/json_out.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/time_util.h"

namespace quizflow::ingress {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void str(Writer& w, const std::string& s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

std::string done(const rapidjson::StringBuffer& sb) { return {sb.GetString(), sb.GetSize()}; }

void entry_fields(Writer& w, const StandingEntry& e) {
  w.Key("rank");
  w.Int64(e.rank);
  w.Key("user_id");
  w.Int64(e.user_id);
  w.Key("score");
  w.Int64(e.standing.score);
  w.Key("correct");
  w.Int64(e.standing.correct);
  w.Key("time_ms");
  w.Int64(e.standing.time_ms);
}

void rewards_array(Writer& w, const std::vector<RewardRow>& rewards) {
  w.StartArray();
  for (const RewardRow& r : rewards) {
    w.StartObject();
    w.Key("user_id");
    w.Int64(r.user_id);
    w.Key("rank");
    w.Int64(r.rank);
    w.Key("reward");
    str(w, r.reward);
    w.EndObject();
  }
  w.EndArray();
}

}  // namespace

std::string error_body(const std::string& code, const std::string& message,
                       const std::string& field) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("error");
  w.StartObject();
  w.Key("code");
  str(w, code);
  w.Key("message");
  str(w, message);
  w.Key("field");
  str(w, field);
  w.EndObject();
  w.EndObject();
  return done(sb);
}

std::string answers_body(const Request& r, int& http_status) {
  if (r.error) {
    http_status = r.error->http_status;
    return error_body(r.error->code, r.error->message, r.error->field);
  }
  http_status = 200;
  int64_t accepted = 0, duplicates = 0, rejected = 0;
  for (const auto& it : r.items) {
    switch (it.verdict.status) {
      case ItemStatus::accepted:
        ++accepted;
        break;
      case ItemStatus::duplicate:
        ++duplicates;
        break;
      default:
        ++rejected;
        if (it.verdict.server_failure()) http_status = 503;
        break;
    }
  }
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("accepted");
  w.Int64(accepted);
  w.Key("duplicates");
  w.Int64(duplicates);
  w.Key("rejected");
  w.Int64(rejected);
  w.Key("results");
  w.StartArray();
  for (const auto& it : r.items) {
    w.StartObject();
    w.Key("event_id");
    str(w, it.event_id());
    w.Key("status");
    w.String(to_string(it.verdict.status));
    if (it.verdict.status == ItemStatus::rejected) {
      w.Key("code");
      str(w, it.verdict.code);
      w.Key("message");
      str(w, it.verdict.message);
      if (!it.verdict.field.empty()) {
        w.Key("field");
        str(w, it.verdict.field);
      }
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return done(sb);
}

std::string quiz_body(const QuizDef& q, QuizState state, bool with_answers) {
  rapidjson::Document d;
  const std::string def = encode_quiz(q);
  d.Parse(def.c_str(), def.size());
  if (!with_answers && d.HasMember("questions") && d["questions"].IsArray())
    for (auto& question : d["questions"].GetArray())
      if (question.IsObject()) question.RemoveMember("correct_option");
  d.AddMember("state", rapidjson::StringRef(to_string(state)), d.GetAllocator());
  rapidjson::StringBuffer sb;
  Writer w(sb);
  d.Accept(w);
  return done(sb);
}

std::string leaderboard_body(const LeaderboardPage& page) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("quiz_id");
  w.Int64(page.quiz_id);
  w.Key("total");
  w.Int64(page.total);
  w.Key("entries");
  w.StartArray();
  for (const auto& e : page.entries) {
    w.StartObject();
    entry_fields(w, e);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return done(sb);
}

std::string close_body(int64_t quiz_id) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("quiz_id");
  w.Int64(quiz_id);
  w.Key("state");
  w.String("closed");
  w.EndObject();
  return sb.GetString();
}

std::string rewards_body(int64_t quiz_id, const std::vector<RewardRow>& rewards) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("quiz_id");
  w.Int64(quiz_id);
  w.Key("rewards");
  rewards_array(w, rewards);
  w.EndObject();
  return sb.GetString();
}

std::string player_body(int64_t quiz_id, const StandingEntry& e) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("quiz_id");
  w.Int64(quiz_id);
  entry_fields(w, e);
  w.EndObject();
  return done(sb);
}

std::string health_body(const HealthReport& h) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("status");
  w.String(h.healthy ? "healthy" : "unhealthy");
  w.Key("checks");
  w.StartObject();
  w.Key("engine");
  w.String(!h.running   ? "not running"
           : h.draining ? "draining: finishing admitted answers, refusing new ones"
           : h.degraded ? "degraded: in-memory state may differ from PostgreSQL; restart"
                        : "ok");
  w.Key("database");
  str(w, h.database_ok ? std::string("ok") : h.database_error);
  w.Key("kafka");
  str(w, h.kafka_ok ? std::string("ok") : h.kafka_error);
  w.Key("commits");
  str(w, h.commits_ok ? std::string("ok") : h.commits_error);
  w.EndObject();
  w.EndObject();
  return done(sb);
}

std::string answer_json(const AnswerEvent& e) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("event_id");
  str(w, e.event_id);
  w.Key("quiz_id");
  w.Int64(e.quiz_id);
  w.Key("user_id");
  w.Int64(e.user_id);
  w.Key("question_id");
  w.Int(e.question_id);
  w.Key("option_id");
  w.Int64(e.option_id);
  w.Key("answered_at");
  str(w, format_rfc3339_ms(e.answered_at_ms));
  w.Key("elapsed_ms");
  w.Int64(e.elapsed_ms);
  w.EndObject();
  return done(sb);
}

std::string quiz_line_json(const QuizDef& q, QuizState state, const std::vector<RewardRow>& rewards,
                           int64_t events) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("quiz");
  const std::string def = encode_quiz(q);
  w.RawValue(def.data(), def.size(), rapidjson::kObjectType);
  w.Key("state");
  w.String(to_string(state));
  w.Key("rewards");
  rewards_array(w, rewards);
  w.Key("events");
  w.Int64(events);
  w.EndObject();
  return done(sb);
}

}  // namespace quizflow::ingress
