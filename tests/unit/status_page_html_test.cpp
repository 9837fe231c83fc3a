// The status page's document (ingress/status_page.h) on its own: self-contained (nothing that
// makes a browser fetch from anywhere but the engine that served it), and carrying the hooks
// the documentation and status_page_test.cpp rely on.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "ingress/status_page.h"

namespace {

using quizflow::ingress::status_page_html;

const std::string& page() {
  static const std::string p(status_page_html());
  return p;
}

TEST(StatusPageHtml, ReachesNothingBeyondTheEngine) {
  const std::string& p = page();
  for (const char* bad : {"http:", "https:", "ws:", "wss:", "ftp:", "//cdn", "@import", "url(",
                          "<script src", "<iframe", "<img", "<object", "<embed", "@font-face"})
    EXPECT_EQ(p.find(bad), std::string::npos) << "the page contains " << bad;
  // Every src/href is a data: URL (the favicon, so that the browser asks for none).
  const std::regex attr(R"re(\b(src|href)\s*=\s*["']?([^"' >]*))re", std::regex::icase);
  int hrefs = 0;
  for (auto it = std::sregex_iterator(p.begin(), p.end(), attr); it != std::sregex_iterator();
       ++it) {
    ++hrefs;
    EXPECT_EQ((*it)[2].str().rfind("data:", 0), 0u) << "external reference: " << it->str();
  }
  EXPECT_EQ(hrefs, 1) << "only the favicon's data: URL is expected";
  // It fetches only the engine's own endpoints, by absolute path.
  const std::regex fetch_call(R"re(getJson\("([^"]*)"\))re");
  int fetches = 0;
  for (auto it = std::sregex_iterator(p.begin(), p.end(), fetch_call); it != std::sregex_iterator();
       ++it) {
    ++fetches;
    const std::string path = (*it)[1];
    EXPECT_TRUE(path == "/monitoring/stats" || path == "/health") << path;
  }
  EXPECT_EQ(fetches, 2);
}

TEST(StatusPageHtml, IsOneCompleteDocumentWithTheTestHooks) {
  const std::string& p = page();
  EXPECT_EQ(p.rfind("<!doctype html>", 0), 0u);
  EXPECT_NE(p.find("<meta charset=\"utf-8\">"), std::string::npos);
  EXPECT_NE(p.find("</html>"), std::string::npos);
  EXPECT_EQ(p.find("</script>"), p.rfind("</script>")) << "one inline script";
  for (const char* hook : {"data-stage", "data-panel", "data-field", "data-health", "data-state",
                           "data-samples", "id=\"health\"", "id=\"banner\""})
    EXPECT_NE(p.find(hook), std::string::npos) << hook;
  // The five stages in flow order.
  size_t at = 0;
  for (const char* stage :
       {"[\"ingest\"", "[\"validate\"", "[\"batch\"", "[\"score\"", "[\"notify\""}) {
    const size_t found = p.find(stage, at);
    ASSERT_NE(found, std::string::npos) << stage << " missing or out of order";
    at = found;
  }
}

}  // namespace
