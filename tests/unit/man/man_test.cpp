// The man pages keep up with the binaries: every long option and every
// subcommand that a --help lists is in the matching docs/man page, and each
// page renders with scdoc. Adding a flag without documenting it fails here.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "process.hpp"

namespace {

namespace fs = std::filesystem;
using gpugate::test::run_shell;
using gpugate::test::slurp;

struct Help {
  std::set<std::string> options;      // "--ledger", ...
  std::vector<std::string> commands;  // subcommand names
};

// CLI11's help after "Usage:": "Options:" lines start "  -x,--name" and
// "Subcommands:" lines "  name   description" (continuations are indented
// further). The text before "Usage:" is free prose, skipped.
Help parse_help(const std::string& text) {
  Help h;
  enum { none, options, commands } section = none;
  bool usage = false;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.starts_with("Usage:")) usage = true;
    if (!usage) continue;
    if (line == "Options:") section = options;
    if (line == "Subcommands:") section = commands;
    if (line == "Positionals:") section = none;
    if (line.size() < 3 || line.substr(0, 2) != "  " || line[2] == ' ') continue;
    std::string first =
        line.substr(2, line.find(' ', 2) == std::string::npos ? std::string::npos : line.find(' ', 2) - 2);
    if (section == options) {
      size_t start = 0;
      while (start <= first.size()) {
        size_t comma = first.find(',', start);
        std::string name = first.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (name.starts_with("--")) h.options.insert(name);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (section == commands) {
      h.commands.push_back(first);
    }
  }
  return h;
}

Help help_of(const std::string& command) {
  auto r = run_shell(command + " --help");
  EXPECT_EQ(r.status, 0) << command << " --help:\n" << r.output;
  return parse_help(r.output);
}

std::string page(const std::string& name) { return slurp(std::string(GG_SOURCE_DIR) + "/docs/man/" + name + ".scd"); }

// "gpugate log verify" as a whole word: "gpugate log verify-proof" does not count.
bool has_phrase(const std::string& text, const std::string& phrase) {
  for (size_t at = text.find(phrase); at != std::string::npos; at = text.find(phrase, at + 1)) {
    size_t end = at + phrase.size();
    if (end == text.size() || !(std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '-')) return true;
  }
  return false;
}

void expect_options_documented(const Help& h, const std::string& text, const std::string& what,
                               const std::string& page_name) {
  for (const auto& opt : h.options)
    EXPECT_TRUE(has_phrase(text, opt)) << what << " lists " << opt << " but docs/man/" << page_name
                                       << ".scd does not document it";
}

}  // namespace

TEST(ManPages, ParseHelpFindsOptionsAndSubcommands) {
  auto h = parse_help(
      "prose\n  fake    not a command\nUsage: x [OPTIONS]\n\nOptions:\n  -h,--help   help\n"
      "  --a-b TEXT Excludes: --c\n                              --continued\nSubcommands:\n  one   first\n"
      "                              two   not a command\n  three\n");
  EXPECT_EQ(h.options, (std::set<std::string>{"--help", "--a-b"}));
  EXPECT_EQ(h.commands, (std::vector<std::string>{"one", "three"}));
  EXPECT_TRUE(has_phrase("gpugate log verify-proof\ngpugate log verify [", "gpugate log verify"));
  EXPECT_FALSE(has_phrase("gpugate log verify-proof", "gpugate log verify"));
}

TEST(ManPages, GpugatedOptionsAreDocumented) {
  std::string text = page("gpugated.8");
  ASSERT_FALSE(text.empty());
  auto h = help_of(std::string(GG_BIN_DIR) + "/gpugated");
  EXPECT_GT(h.options.size(), 30u);  // the parser still understands CLI11's help
  expect_options_documented(h, text, "gpugated --help", "gpugated.8");
}

TEST(ManPages, GpugateCommandsAndOptionsAreDocumented) {
  std::string text = page("gpugate.8");
  ASSERT_FALSE(text.empty());
  std::string bin = std::string(GG_BIN_DIR) + "/gpugate";
  auto top = help_of(bin);
  EXPECT_GT(top.commands.size(), 8u);
  expect_options_documented(top, text, "gpugate --help", "gpugate.8");
  // Every command and sub-command, each with its options, down the tree.
  std::vector<std::string> todo;
  for (const auto& c : top.commands) todo.push_back(c);
  size_t checked = 0;
  while (!todo.empty()) {
    std::string path = todo.back();
    todo.pop_back();
    EXPECT_TRUE(has_phrase(text, "gpugate " + path))
        << "gpugate has the command '" << path << "' but docs/man/gpugate.8.scd has no 'gpugate " << path << "'";
    auto h = help_of(fmt::format("{} {}", bin, path));
    std::string what = "gpugate " + path;
    what += " --help";
    expect_options_documented(h, text, what, "gpugate.8");
    for (const auto& c : h.commands) todo.push_back(fmt::format("{} {}", path, c));
    checked++;
  }
  EXPECT_GT(checked, 25u);
}

TEST(ManPages, PolicyPageNamesEveryKey) {
  std::string text = page("gpugate-policy.5");
  // The keys parse_policy accepts (userspace/lib/policy/policy.cpp).
  for (const char* key : {"version",
                          "mode",
                          "profile",
                          "read_wait_max_us",
                          "[classes]",
                          "[[rules]]",
                          "name",
                          "class",
                          "vendor",
                          "gpu",
                          "uid",
                          "comm",
                          "cgroup",
                          "action",
                          "[signers]",
                          "allowed_signers",
                          "break_glass_per_hour",
                          "max_grant_window",
                          "max_grant_uses",
                          "[[signers.groups]]",
                          "principals",
                          "threshold",
                          "break_glass"})
    EXPECT_NE(text.find(key), std::string::npos) << "gpugate-policy.5.scd does not mention " << key;
}

TEST(ManPages, PagesRenderAndAreBuilt) {
  for (const char* name : {"gpugated.8", "gpugate.8", "gpugate-policy.5"}) {
    std::string src = std::string(GG_SOURCE_DIR) + "/docs/man/" + name + ".scd";
    auto r = run_shell("scdoc < " + src);
    EXPECT_EQ(r.status, 0) << name << ": " << r.output;
    EXPECT_NE(r.output.find(".TH"), std::string::npos) << name;
    std::string text = slurp(src);
    for (const char* section : {"NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "EXAMPLES", "SEE ALSO"})
      EXPECT_NE(text.find(std::string("\n# ") + section), std::string::npos) << name << " has no " << section;
    // Programs: their options and how they exit.
    if (std::string(name).ends_with(".8"))
      for (const char* section : {"OPTIONS", "EXIT STATUS"})
        EXPECT_NE(text.find(std::string("\n# ") + section), std::string::npos) << name << " has no " << section;
    fs::path built = fs::path(GG_MAN_BUILD_DIR) / name;
    std::error_code ec;
    EXPECT_GT(fs::file_size(built, ec), 1000u) << built << " was not built (cmake/man.cmake)";
  }
}
