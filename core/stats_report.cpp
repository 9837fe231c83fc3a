#include "core/stats_report.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>

namespace quizflow {
namespace {

// JSON tree built from dotted paths, keeping first-insertion order.
struct Node {
  std::vector<std::pair<std::string, std::unique_ptr<Node>>> children;
  const Figure* leaf = nullptr;
  std::string raw;  // pre-rendered JSON value
  Node* child(const std::string& name) {
    for (auto& [n, c] : children)
      if (n == name) return c.get();
    children.emplace_back(name, std::make_unique<Node>());
    return children.back().second.get();
  }
};

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void write_node(Writer& w, const Node& n) {
  if (n.leaf) {
    switch (n.leaf->type) {
      case JsonType::integer:
        w.Int64(static_cast<int64_t>(std::llround(n.leaf->value)));
        break;
      case JsonType::boolean:
        w.Bool(n.leaf->value != 0);
        break;
      case JsonType::number:
        w.Double(std::round(n.leaf->value * 1000.0) / 1000.0);
        break;
    }
    return;
  }
  if (!n.raw.empty()) {
    w.RawValue(n.raw.c_str(), n.raw.size(), rapidjson::kArrayType);
    return;
  }
  w.StartObject();
  for (const auto& [name, c] : n.children) {
    w.Key(name.c_str(), static_cast<rapidjson::SizeType>(name.size()));
    write_node(w, *c);
  }
  w.EndObject();
}

std::string prom_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

const char* prom_type(FigureKind k) {
  switch (k) {
    case FigureKind::counter:
      return "counter";
    case FigureKind::summary:
      return "summary";
    default:
      return "gauge";
  }
}

}  // namespace

std::string stats_json(const StatsReport& r) {
  Node root;
  for (const Figure& f : r.figures) {
    Node* n = &root;
    size_t start = 0;
    for (;;) {
      const size_t dot = f.json.find('.', start);
      n = n->child(
          f.json.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    n->leaf = &f;
  }
  {
    std::string arr = "[";
    for (const auto& [quiz, events] : r.largest_pending) {
      if (arr.size() > 1) arr += ',';
      arr += "{\"quiz_id\":" + std::to_string(quiz) + ",\"events\":" + std::to_string(events) + "}";
    }
    arr += "]";
    root.child("batches")->child("largest_pending")->raw = arr;
  }
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("status");
  w.String(r.running ? "running" : "stopped");
  for (const auto& [name, c] : root.children) {
    w.Key(name.c_str(), static_cast<rapidjson::SizeType>(name.size()));
    write_node(w, *c);
  }
  w.EndObject();
  return {sb.GetString(), sb.GetSize()};
}

std::string stats_prometheus(const StatsReport& r) {
  // Samples grouped by family, families in first-appearance order.
  std::vector<std::string> order;
  std::map<std::string, std::vector<const Figure*>> families;
  for (const Figure& f : r.figures) {
    auto [it, fresh] = families.try_emplace(f.family);
    if (fresh) order.push_back(f.family);
    it->second.push_back(&f);
  }
  std::string out;
  out.reserve(16384);
  out += "# HELP quizflow_up 1 when the engine is running.\n# TYPE quizflow_up gauge\n";
  out += std::string("quizflow_up ") + (r.running ? "1" : "0") + "\n";
  for (const auto& name : order) {
    const auto& samples = families[name];
    out += "# HELP " + name + " " + samples.front()->help + "\n";
    out += "# TYPE " + name + " " + prom_type(samples.front()->kind) + "\n";
    for (const Figure* f : samples) {
      out += name + f->suffix;
      if (!f->labels.empty()) {
        out += '{';
        for (size_t i = 0; i < f->labels.size(); ++i) {
          if (i) out += ',';
          out += f->labels[i].first + "=\"" + f->labels[i].second + "\"";
        }
        out += '}';
      }
      out += ' ' + prom_number(f->value * f->prom_scale) + '\n';
    }
  }
  return out;
}

}  // namespace quizflow
