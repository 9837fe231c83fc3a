// The documentation against the tree (issue 14: "every page accurate to the code"): the
// architecture page names every source file of the engine's folders, and every relative link
// of the README and of docs/ leads to a file that exists.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace quizflow {
namespace {

namespace fs = std::filesystem;

const fs::path kRoot = QF_SOURCE_DIR;

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Docs, TheArchitecturePageNamesEverySourceFile) {
  const std::string page = read(kRoot / "docs/architecture.md");
  ASSERT_FALSE(page.empty()) << "docs/architecture.md not found";
  int files = 0;
  for (const char* folder :
       {"core", "stages", "pipeline", "ingress", "egress", "app", "tools", "bench"}) {
    for (const auto& e : fs::directory_iterator(kRoot / folder)) {
      const std::string ext = e.path().extension().string();
      if (ext != ".h" && ext != ".cpp") continue;
      ++files;
      // "core/config" stands for core/config.h and core/config.cpp.
      const std::string name = std::string(folder) + "/" + e.path().stem().string();
      EXPECT_NE(page.find(name), std::string::npos)
          << name << ext << " is not named in docs/architecture.md (\"Folder by folder\")";
    }
  }
  EXPECT_GT(files, 80);
}

TEST(Docs, EveryRelativeLinkLeadsToAFile) {
  std::vector<fs::path> pages = {kRoot / "README.md"};
  for (const auto& e : fs::directory_iterator(kRoot / "docs"))
    if (e.path().extension() == ".md") pages.push_back(e.path());
  ASSERT_GE(pages.size(), 8u);
  // [text](target) with a target that is not a URL or an anchor of the same page.
  const std::regex link(R"(\]\(([^)#\s]+)(#[^)\s]*)?\))");
  int links = 0;
  for (const fs::path& page : pages) {
    const std::string text = read(page);
    for (auto it = std::sregex_iterator(text.begin(), text.end(), link);
         it != std::sregex_iterator(); ++it) {
      const std::string target = (*it)[1];
      if (target.find("://") != std::string::npos || target.rfind("mailto:", 0) == 0) continue;
      ++links;
      EXPECT_TRUE(fs::exists(page.parent_path() / target))
          << page.filename().string() << " links to " << target << ", which does not exist";
    }
  }
  EXPECT_GT(links, 20);
}

}  // namespace
}  // namespace quizflow
