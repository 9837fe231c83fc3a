#include "stages/notify.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace quizflow::stages {
namespace {

// One notification body: notification_id, type, quiz_id, user_id, then the type's fields.
class Body {
 public:
  Body(const char* type, std::string_view id_suffix, int64_t quiz_id, int64_t user_id)
      : w_(sb_), user_id_(user_id) {
    std::string id = type;
    id += ':';
    id += std::to_string(quiz_id);
    id += ':';
    id += std::to_string(user_id);
    if (!id_suffix.empty()) {
      id += ':';
      id.append(id_suffix);
    }
    w_.StartObject();
    w_.Key("notification_id");
    w_.String(id.data(), static_cast<rapidjson::SizeType>(id.size()));
    w_.Key("type");
    w_.String(type);
    w_.Key("quiz_id");
    w_.Int64(quiz_id);
    w_.Key("user_id");
    w_.Int64(user_id);
  }
  Body& i64(const char* key, int64_t v) {
    w_.Key(key);
    w_.Int64(v);
    return *this;
  }
  Body& boolean(const char* key, bool v) {
    w_.Key(key);
    w_.Bool(v);
    return *this;
  }
  Body& str(const char* key, std::string_view v) {
    w_.Key(key);
    w_.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
    return *this;
  }
  Notification done() {
    w_.EndObject();
    return Notification{std::to_string(user_id_), std::string(sb_.GetString(), sb_.GetSize())};
  }

 private:
  rapidjson::StringBuffer sb_;
  rapidjson::Writer<rapidjson::StringBuffer> w_;
  int64_t user_id_;
};

}  // namespace

Notification answer_result(const AnswerEvent& e) {
  return Body("answer_result", e.event_id, e.quiz_id, e.user_id)
      .i64("question_id", e.question_id)
      .str("event_id", e.event_id)
      .boolean("correct", e.correct)
      .i64("points", e.points)
      .done();
}

Notification rank_changed(int64_t quiz_id, const RankMove& m, std::string_view batch_key) {
  return Body("rank_changed", batch_key, quiz_id, m.user_id)
      .i64("rank", m.rank)
      .i64("previous_rank", m.previous_rank)
      .done();
}

Notification quiz_results(int64_t quiz_id, int64_t user_id, int64_t rank, const Standing& s) {
  return Body("quiz_results", {}, quiz_id, user_id)
      .i64("rank", rank)
      .i64("score", s.score)
      .i64("correct", s.correct)
      .i64("time_ms", s.time_ms)
      .done();
}

Notification reward_granted(int64_t quiz_id, int64_t user_id, int64_t rank,
                            const std::string& reward) {
  return Body("reward_granted", {}, quiz_id, user_id)
      .i64("rank", rank)
      .str("reward", reward)
      .done();
}

std::vector<Notification> batch_notifications(const DistinctEvents& d, const TxnChanges& c,
                                              std::string_view batch_key) {
  std::vector<Notification> out;
  out.reserve(c.counted.size());
  for (size_t k : c.counted) out.push_back(answer_result(*d.events[k]));
  for (const auto& p : c.proposals)
    for (const RankMove& m : p.moves) out.push_back(rank_changed(p.quiz_id, m, batch_key));
  return out;
}

}  // namespace quizflow::stages
