#include "egress/outbox_codec.h"

namespace quizflow::egress {

std::string encode_outbox(std::span<const Notification> messages) {
  size_t n = 0;
  for (const Notification& m : messages) n += m.key.size() + m.value.size() + 2;
  std::string out;
  out.reserve(n);
  for (const Notification& m : messages) {
    out += m.key;
    out += '\t';
    out += m.value;
    out += '\n';
  }
  return out;
}

std::vector<Notification> decode_outbox(std::string_view payload) {
  std::vector<Notification> out;
  size_t i = 0;
  while (i < payload.size()) {
    size_t end = payload.find('\n', i);
    if (end == std::string_view::npos) end = payload.size();
    const std::string_view line = payload.substr(i, end - i);
    const size_t tab = line.find('\t');
    if (tab != std::string_view::npos)
      out.push_back(
          Notification{std::string(line.substr(0, tab)), std::string(line.substr(tab + 1))});
    i = end + 1;
  }
  return out;
}

std::string pg_id_array(const std::vector<int64_t>& ids) {
  std::string out = "{";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  out += '}';
  return out;
}

}  // namespace quizflow::egress
