// Fuzz target: the answer decoder (decode_answer, engine.h) — what an event file line or a Kafka
// message goes through — checked against decode_request on the same bytes. Invariants:
// - an item has an event or a rejection, never both: a decoded event has a pending verdict and
//   no echo; a rejection has the code "malformed_json" or "schema", a message, valid UTF-8 texts
//   and an echo that is empty or a valid event_id;
// - a decoded event's fields are in the ranges of spec §3 and round-trip: its canonical JSON
//   decodes to the same fields;
// - decode_request agrees: the same bytes fail to parse for both; a single-answer body gives
//   decode_answer's item; a decoded answer wrapped in {"answers":[...]} gives the same event;
//   a failed request has no items, a non-empty code and status 400 or 413.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/time_util.h"
#include "fuzz_check.h"
#include "pipeline/engine.h"
#include "tools/api_json.h"

namespace quizflow::fuzz {
namespace {

constexpr size_t kMaxBatch = 1000;  // the engine's default http_max_batch

// The canonical JSON of a decoded answer (the API's encoder, tools/api_json.h).
std::string encode_answer(const AnswerEvent& e) {
  return tools::answer_json({e.event_id, e.quiz_id, e.user_id, e.question_id, e.option_id,
                             format_rfc3339_ms(e.answered_at_ms), e.elapsed_ms});
}

void check_item(const Item& it) {
  if (it.event) {
    const AnswerEvent& e = *it.event;
    QF_FUZZ_CHECK(it.verdict.status == ItemStatus::pending);
    QF_FUZZ_CHECK(it.verdict.code.empty() && it.verdict.message.empty());
    QF_FUZZ_CHECK(it.echo_id.empty());
    QF_FUZZ_CHECK(valid_event_id(e.event_id));
    QF_FUZZ_CHECK(e.quiz_id >= 1 && e.user_id >= 1 && e.question_id >= 1);
    QF_FUZZ_CHECK(!e.correct && e.points == 0);  // derived later, by validate
    return;
  }
  QF_FUZZ_CHECK(it.verdict.status == ItemStatus::rejected);
  QF_FUZZ_CHECK(it.verdict.code == "schema" || it.verdict.code == "malformed_json");
  QF_FUZZ_CHECK(!it.verdict.message.empty());
  QF_FUZZ_CHECK(valid_utf8(it.verdict.message) && valid_utf8(it.verdict.field));
  QF_FUZZ_CHECK(it.echo_id.empty() || valid_event_id(it.echo_id));
  if (it.verdict.code == "malformed_json")
    QF_FUZZ_CHECK(it.echo_id.empty() && it.verdict.field.empty());
}

void check_request(const Request& r, size_t decoded) {
  size_t events = 0;
  for (const Item& it : r.items) {
    check_item(it);
    events += it.event.has_value();
  }
  QF_FUZZ_CHECK(decoded == events);
  QF_FUZZ_CHECK(r.items.size() <= kMaxBatch);
  if (r.error) {
    QF_FUZZ_CHECK(r.items.empty() && decoded == 0);
    QF_FUZZ_CHECK(!r.error->code.empty() && !r.error->message.empty());
    QF_FUZZ_CHECK(r.error->http_status == (r.error->code == "too_many_answers" ? 413 : 400));
    QF_FUZZ_CHECK(valid_utf8(r.error->message) && valid_utf8(r.error->field));
  } else {
    QF_FUZZ_CHECK(!r.single || r.items.size() == 1);
  }
}

void run(std::string_view input) {
  const Item item = decode_answer(input);
  check_item(item);

  if (item.event) {
    const std::string canonical = encode_answer(*item.event);
    const Item again = decode_answer(canonical);
    QF_FUZZ_CHECK(again.event && same_decoded_fields(*again.event, *item.event));
  }

  Request r(std::string(input), nullptr);
  const size_t decoded = decode_request(r, kMaxBatch);
  check_request(r, decoded);
  const bool answer_malformed = item.verdict.code == "malformed_json";
  const bool request_malformed = r.error && r.error->code == "malformed_json";
  QF_FUZZ_CHECK(answer_malformed == request_malformed);
  if (!r.error && r.single) {
    const Item& same = r.items[0];
    QF_FUZZ_CHECK(same.event.has_value() == item.event.has_value());
    if (item.event) QF_FUZZ_CHECK(same_decoded_fields(*same.event, *item.event));
    QF_FUZZ_CHECK(same_verdict(same.verdict, item.verdict));
    QF_FUZZ_CHECK(same.echo_id == item.echo_id);
  }

  if (item.event) {
    // RapidJSON drops a UTF-8 byte order mark at the start of a document, and any of its bytes
    // EF, BB, BF there in that order (its EncodedInputStream<UTF8<>, MemoryStream>), but not
    // inside an array: the wrapped copy goes without them.
    std::string_view body = input;
    for (const char b : {'\xEF', '\xBB', '\xBF'}) {
      if (!body.empty() && body.front() == b) body.remove_prefix(1);
    }
    Request batch("{\"answers\":[" + std::string(body) + "]}", nullptr);
    const size_t n = decode_request(batch, kMaxBatch);
    check_request(batch, n);
    QF_FUZZ_CHECK(!batch.error && !batch.single && n == 1 && batch.items.size() == 1);
    QF_FUZZ_CHECK(same_decoded_fields(*batch.items[0].event, *item.event));
  }
}

}  // namespace
}  // namespace quizflow::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  quizflow::fuzz::run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
