#include "pipeline/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>

namespace quizflow {
namespace {

// The message with control characters escaped, so that one event is always one line;
// kJson also escapes quotes and backslashes (the inside of a JSON string).
template <bool kJson>
class EscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    for (const char c : msg.payload) {
      switch (c) {
        case '"':
          if (kJson)
            dest.append(std::string_view("\\\""));
          else
            dest.push_back(c);
          break;
        case '\\':
          if (kJson)
            dest.append(std::string_view("\\\\"));
          else
            dest.push_back(c);
          break;
        case '\n':
          dest.append(std::string_view("\\n"));
          break;
        case '\r':
          dest.append(std::string_view("\\r"));
          break;
        case '\t':
          dest.append(std::string_view("\\t"));
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
            dest.append(std::string_view(buf));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EscapedMessage>();
  }
};

}  // namespace

void setup_logging(const Config& c, bool to_stderr) {
  if (to_stderr) {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>(
        "quizflow", std::make_shared<spdlog::sinks::stderr_sink_mt>()));
  }
  spdlog::set_level(spdlog::level::from_str(c.log_level));
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (c.log_format == "json") {
    formatter->add_flag<EscapedMessage<true>>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","msg":"%*"})");
  } else {
    formatter->add_flag<EscapedMessage<false>>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %*");
  }
  spdlog::set_formatter(std::move(formatter));
  spdlog::flush_on(spdlog::level::info);
}

}  // namespace quizflow
