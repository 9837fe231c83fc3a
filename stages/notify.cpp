#include "stages/notify.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace quizflow::stages {

Notification answer_result(const AnswerEvent& e) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  const std::string id = "answer_result:" + e.event_id;
  w.StartObject();
  w.Key("notification_id");
  w.String(id.data(), static_cast<rapidjson::SizeType>(id.size()));
  w.Key("type");
  w.String("answer_result");
  w.Key("quiz_id");
  w.Int64(e.quiz_id);
  w.Key("user_id");
  w.Int64(e.user_id);
  w.Key("question_id");
  w.Int(e.question_id);
  w.Key("event_id");
  w.String(e.event_id.data(), static_cast<rapidjson::SizeType>(e.event_id.size()));
  w.Key("correct");
  w.Bool(e.correct);
  w.Key("points");
  w.Int64(e.points);
  w.EndObject();
  return Notification{std::to_string(e.user_id), std::string(sb.GetString(), sb.GetSize())};
}

std::vector<Notification> answer_results(const DistinctEvents& d, const TxnChanges& c) {
  std::vector<Notification> out;
  out.reserve(c.counted.size());
  for (size_t k : c.counted) out.push_back(answer_result(*d.events[k]));
  return out;
}

}  // namespace quizflow::stages
