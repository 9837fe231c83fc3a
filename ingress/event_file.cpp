#include "ingress/event_file.h"

#include <chrono>
#include <stdexcept>

#include "ingress/json_out.h"

namespace quizflow::ingress {

Result<ExportSummary> export_events(Store& store, const std::vector<int64_t>& quiz_ids,
                                    std::ostream& out, const ExportProgress& progress,
                                    double every_s) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto next_report = t0 + std::chrono::duration<double>(every_s);
  ExportSummary s;
  int64_t last_quiz = 0;
  std::string line;
  auto read = store.read_events(quiz_ids, [&](const AnswerEvent& e) {
    line = answer_json(e);
    line += '\n';
    out.write(line.data(), static_cast<std::streamsize>(line.size()));
    if (!out) throw std::runtime_error("writing the event file failed");
    ++s.events;
    if (e.quiz_id != last_quiz) {
      ++s.quizzes;
      last_quiz = e.quiz_id;
    }
    if (progress && (s.events & 1023) == 0 && Clock::now() >= next_report) {
      next_report = Clock::now() + std::chrono::duration<double>(every_s);
      progress(s.events, std::chrono::duration<double>(Clock::now() - t0).count());
    }
  });
  if (!read.ok()) return read.status();
  out.flush();
  if (!out) return Status::internal("writing the event file failed");
  s.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return s;
}

}  // namespace quizflow::ingress
