#include "ingress/event_file.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <set>
#include <stdexcept>

#include "ingress/json_out.h"
#include "pipeline/engine.h"

namespace quizflow::ingress {

Result<ExportSummary> export_events(Store& store, const std::vector<int64_t>& quiz_ids,
                                    std::ostream& out, const ExportProgress& progress,
                                    double every_s) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto next_report = t0 + std::chrono::duration<double>(every_s);
  ExportSummary s;
  std::string line;
  auto write = [&] {
    line += '\n';
    out.write(line.data(), static_cast<std::streamsize>(line.size()));
    if (!out) throw std::runtime_error("writing the event file failed");
  };
  // Each quiz's line comes from the snapshot its events are read in.
  auto on_quiz = [&](const LoggedQuiz& q) {
    if (!q.record) {
      if (q.events > 0) s.without_definition.push_back(q.quiz_id);
      return;
    }
    line = quiz_line_json(q.record->def, q.record->state, q.rewards, q.events);
    write();
    ++s.quizzes;
  };
  auto read = store.read_events(
      quiz_ids,
      [&](const AnswerEvent& e) {
        line = answer_json(e);
        write();
        ++s.events;
        if (progress && (s.events & 1023) == 0 && Clock::now() >= next_report) {
          next_report = Clock::now() + std::chrono::duration<double>(every_s);
          progress(s.events, std::chrono::duration<double>(Clock::now() - t0).count());
        }
      },
      on_quiz);
  if (!read.ok()) return read.status();
  out.flush();
  if (!out) return Status::internal("writing the event file failed");
  s.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return s;
}

namespace {

// A quiz line's members: "quiz" (required), "state" and "rewards" (optional).
Status decode_quiz_line(const rapidjson::Value& v, SourceQuiz& out) {
  out = SourceQuiz{};
  bool have_def = false;
  for (auto m = v.MemberBegin(); m != v.MemberEnd(); ++m) {
    const std::string_view name(m->name.GetString(), m->name.GetStringLength());
    if (name == "quiz") {
      if (!m->value.IsObject())
        return Status::invalid("schema: quiz must be an object (field quiz)");
      rapidjson::StringBuffer sb;
      rapidjson::Writer<rapidjson::StringBuffer> w(sb);
      m->value.Accept(w);
      QuizDecodeResult d = decode_quiz(std::string_view(sb.GetString(), sb.GetSize()));
      if (!d.quiz)
        return Status::invalid(d.code + ": " + d.message + " (field quiz" +
                               (d.field.empty() ? "" : "." + d.field) + ")");
      out.def = std::move(*d.quiz);
      have_def = true;
    } else if (name == "state") {
      std::optional<QuizState> st;
      if (m->value.IsString()) st = quiz_state_of(m->value.GetString());
      if (!st)
        return Status::invalid(
            "schema: state must be \"open\", \"closed\" or \"finalized\" "
            "(field state)");
      out.state = *st;
    } else if (name == "rewards") {
      if (!m->value.IsArray())
        return Status::invalid("schema: rewards must be an array (field rewards)");
      std::set<int64_t> users;
      for (const auto& r : m->value.GetArray()) {
        RewardRow row;
        const bool ok = r.IsObject() && r.MemberCount() == 3 && r.HasMember("user_id") &&
                        r["user_id"].IsInt64() && r["user_id"].GetInt64() > 0 &&
                        r.HasMember("rank") && r["rank"].IsInt64() && r["rank"].GetInt64() > 0 &&
                        r["rank"].GetInt64() <= INT32_MAX && r.HasMember("reward") &&
                        r["reward"].IsString();
        if (!ok)
          return Status::invalid(
              "schema: a reward is {\"user_id\":>0,\"rank\":1…2^31-1,\"reward\":\"…\"} "
              "(field rewards)");
        row.user_id = r["user_id"].GetInt64();
        row.rank = r["rank"].GetInt64();
        row.reward.assign(r["reward"].GetString(), r["reward"].GetStringLength());
        if (!users.insert(row.user_id).second)
          return Status::invalid("schema: user " + std::to_string(row.user_id) +
                                 " has two rewards (field rewards)");
        out.rewards.push_back(std::move(row));
      }
    } else if (name == "events") {
      if (!m->value.IsInt64() || m->value.GetInt64() < 0)
        return Status::invalid("schema: events must be a count of answer lines (field events)");
      out.events = m->value.GetInt64();
    } else {
      return Status::invalid("schema: unknown field " + std::string(name) + " (field " +
                             std::string(name) + ")");
    }
  }
  if (!have_def) return Status::invalid("schema: a quiz line needs its definition (field quiz)");
  if (!out.rewards.empty() && out.state != QuizState::finalized)
    return Status::invalid("schema: only a finalized quiz has granted rewards (field rewards)");
  return Status();
}

}  // namespace

Result<EventFileReader::Kind> EventFileReader::next(SourceQuiz& quiz, AnswerEvent& event) {
  for (;;) {
    if (!std::getline(in_, text_)) {
      if (in_.bad() || !in_.eof()) return Status::invalid("the event file could not be read");
      return Kind::end;
    }
    ++line_;
    bytes_ += static_cast<int64_t>(text_.size()) + 1;
    if (!text_.empty() && text_.back() == '\r') text_.pop_back();
    if (text_.find_first_not_of(" \t") == std::string::npos) continue;
    auto at = [&](const std::string& what) {
      return Status::invalid("line " + std::to_string(line_) + ": " + what);
    };
    rapidjson::Document d;
    d.Parse(text_.data(), text_.size());
    if (d.HasParseError() || !d.IsObject()) return at("malformed_json: not a JSON object");
    if (d.HasMember("quiz")) {
      if (Status s = decode_quiz_line(d, quiz); !s.ok()) return at(s.message());
      return Kind::quiz;
    }
    Item item = decode_answer(text_);
    if (!item.event || item.verdict.status == ItemStatus::rejected)
      return at(item.verdict.code + ": " + item.verdict.message +
                (item.verdict.field.empty() ? "" : " (field " + item.verdict.field + ")"));
    event = std::move(*item.event);
    return Kind::event;
  }
}

bool EventFileRuns::wanted(int64_t quiz) const {
  return quiz_ids_.empty() ||
         std::find(quiz_ids_.begin(), quiz_ids_.end(), quiz) != quiz_ids_.end();
}

double EventFileRuns::fraction() const {
  if (bytes_ <= 0) return 0;
  return std::min(1.0, static_cast<double>(reader_.bytes_read()) / static_cast<double>(bytes_));
}

Result<std::optional<QuizRun>> EventFileRuns::next() {
  for (;;) {  // runs of quizzes not wanted are read past
    QuizRun run;
    int64_t run_line = 0;  // the line of its quiz line
    bool open = false;
    if (next_quiz_) {
      run.quiz_id = next_quiz_->def.quiz_id;
      run.quiz = std::move(next_quiz_);
      run_line = next_line_;
      next_quiz_.reset();
      open = true;
    } else if (next_event_) {
      run.quiz_id = next_event_->quiz_id;
      run.events.push_back(std::move(*next_event_));
      next_event_.reset();
      open = true;
    }
    SourceQuiz quiz;
    AnswerEvent event;
    while (!ended_) {
      auto kind = reader_.next(quiz, event);
      if (!kind.ok()) return kind.status();
      if (*kind == EventFileReader::Kind::end) {
        ended_ = true;
        break;
      }
      if (*kind == EventFileReader::Kind::quiz) {
        if (open) {  // the next run starts here
          next_quiz_ = std::move(quiz);
          next_line_ = reader_.line();
          break;
        }
        run.quiz_id = quiz.def.quiz_id;
        run.quiz = std::move(quiz);
        run_line = reader_.line();
        open = true;
        continue;
      }
      if (open && event.quiz_id != run.quiz_id) {
        next_event_ = std::move(event);
        break;
      }
      if (!open) {
        run.quiz_id = event.quiz_id;
        open = true;
      }
      if (wanted(event.quiz_id)) run.events.push_back(std::move(event));
    }
    if (!open) return std::optional<QuizRun>();
    if (!wanted(run.quiz_id)) continue;
    const int64_t got = static_cast<int64_t>(run.events.size());
    if (run.quiz && run.quiz->events && *run.quiz->events != got)
      return Status::invalid(
          "line " + std::to_string(run_line) + ": quiz " + std::to_string(run.quiz_id) +
          " announces " + std::to_string(*run.quiz->events) + " answers and " +
          std::to_string(got) + " follow (a file cut short?); nothing of this quiz was imported");
    return std::optional<QuizRun>(std::move(run));
  }
}

}  // namespace quizflow::ingress
