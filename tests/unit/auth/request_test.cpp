// The request text: canonical round trips, strict rejections that name the
// line and the fix, and the scope check (host, GPU, window).
#include <gtest/gtest.h>
#include <time.h>

#include <string>
#include <vector>

#include "auth_fixture.hpp"
#include "gpugate/request.hpp"

using namespace gpugate::auth;
using gpugate::test::auth::sample_request;

namespace {

std::string replace(std::string text, std::string_view from, std::string_view to) {
  auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

}  // namespace

TEST(RequestText, ParsesTheCanonicalForm) {
  auto r = parse_request(sample_request(), "req.txt");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->host, "3d1219c7c4c5404aaa1f6d2a48adfda4");
  EXPECT_EQ(r->gpu, "GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8");
  EXPECT_EQ(r->class_name, "power.limit");
  ASSERT_EQ(r->params.size(), 1u);
  EXPECT_EQ(r->params[0], (RequestParam{"power_limit_mw", "250000"}));
  EXPECT_EQ(r->scope.kind, ScopeKind::kUnit);
  EXPECT_EQ(r->scope.name, "train.service");
  EXPECT_EQ(r->scope.cgroup_path(), "/system.slice/train.service");
  EXPECT_EQ(r->not_before, 1795858800);  // date -u -d 2026-11-28T09:40:00Z +%s
  EXPECT_EQ(r->not_after, r->not_before + 600);
  EXPECT_EQ(r->nonce, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(r->requester, "alice@example.org");
  EXPECT_EQ(r->reason, "INC-1234 rack 7 over its power budget");
}

TEST(RequestText, RenderAndParseAreInverse) {
  // render(parse(t)) == t for canonical text...
  std::vector<std::string> texts = {
      sample_request(),
      replace(sample_request(), "param: power_limit_mw=250000\n", ""),
      replace(sample_request(), "param: power_limit_mw=250000\n",
              "param: a=1\nparam: b_2=x:y/z\nparam: power_limit_mw=250000\n"),
      replace(replace(sample_request(), "gpu: GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8", "gpu: 0000:3b:00.0"),
              "reason: INC-1234 rack 7 over its power budget", "reason: Grüße, 温度 too high ☃"),
      replace(replace(sample_request(), "gpu: GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8", "gpu: 7"),
              "class: power.limit", "class: gpu.reset"),
  };
  for (const auto& t : texts) {
    auto r = parse_request(t, "t");
    ASSERT_TRUE(r) << r.error().message << "\n" << t;
    EXPECT_EQ(render_request(*r), t);
    EXPECT_TRUE(validate_request(*r));
  }
  // ...and parse(render(x)) == x for a request built in code.
  AuthRequest x{"host-1", "GPU-00000000-0000-0000-0000-00000000000a", "power.off", {}, {}, 0,
                1,        "ffffffffffffffffffffffffffffffff",         "bob",       "r"};
  auto back = parse_request(render_request(x), "x");
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, x);
}

TEST(RequestText, RejectionsNameTheLineTheReasonAndTheFix) {
  const std::string ok = sample_request();
  struct Case {
    std::string text;
    std::string expect;  // substrings, '|' separated
  };
  std::vector<Case> cases = {
      {"", "empty file"},
      {replace(ok, "gpugate-request v1", "gpugate-request v2"), "req.txt:1:|not supported"},
      {replace(ok, "gpugate-request v1", "hello"), "req.txt:1:|expected 'gpugate-request v1'"},
      {replace(ok, "class: power.limit\n", "class: power.limit\ncolour: blue\n"),
       "req.txt:5:|unknown field 'colour'|host, gpu, class"},
      {replace(ok, "gpu: GPU", "host: other\ngpu: GPU"), "req.txt:3:|duplicate field 'host' (first on line 2)"},
      {replace(ok, "nonce: 0123456789abcdef0123456789abcdef\n", ""), "field 'nonce' is missing before 'requester'"},
      {replace(ok, "reason: INC-1234 rack 7 over its power budget\n", ""), "field 'reason' is missing"},
      {replace(replace(ok, "host: 3d1219c7c4c5404aaa1f6d2a48adfda4\n", ""), "class: power.limit\n",
               "class: power.limit\nhost: 3d1219c7c4c5404aaa1f6d2a48adfda4\n"),
       "req.txt:2:|field 'host' is missing before 'gpu'"},
      {replace(ok, "not-after: 2026-11-28T09:50:00Z\n", "not-after: 2026-11-28T09:50:00Z\nparam: late=1\n"),
       "req.txt:9:|out of order"},
      {replace(ok, "budget", "budget\xff"), "req.txt:11:|not UTF-8"},
      {replace(ok, "budget", "budget\xc0\xaf"), "req.txt:11:|not UTF-8"},
      {replace(ok, "budget", "budget\xed\xa0\x80"), "req.txt:11:|surrogate"},
      {replace(ok, "budget", "budget\xe2\x80"), "req.txt:11:|cut short"},
      {replace(ok, "budget", "budget\x01"), "req.txt:11:|control character 0x01"},
      {replace(ok, "budget", "budget\xc2\x85"), "req.txt:11:|control character U+0085"},
      {replace(ok, "rack 7",
               "rack \xe2\x80\xae"
               "7"),
       "req.txt:11:|U+202E"},
      {replace(ok, "budget", "budget\xe2\x80\x8b"), "req.txt:11:|U+200B"},
      {replace(ok, "class: power.limit\n", "class: power.limit\r\n"), "req.txt:4:|carriage return|dos2unix"},
      {replace(ok, "reason: INC", "reason:\tINC"), "req.txt:11:|tab"},
      {replace(ok, "reason: INC", "reason:  INC"), "req.txt:11:|spaces before or after"},
      {replace(ok, "reason: INC", "reason:INC"), "req.txt:11:|one space after the colon"},
      {replace(ok, "budget\n", "budget \n"), "req.txt:11:|spaces before or after"},
      {replace(ok, "reason: INC-1234 rack 7 over its power budget", "reason: "), "req.txt:11:|empty value"},
      {ok + "extra: 1\n", "req.txt:12:|text after the reason line"},
      {ok + "\n", "req.txt:12:|text after the reason line"},
      {ok.substr(0, ok.size() - 1), "req.txt:11:|no newline at its end"},
      {replace(ok, "class: power.limit\n", "class: power.limit\n\n"), "req.txt:5:|empty line"},
      {replace(ok, "09:40:00Z", "09:40:00"), "req.txt:7:|YYYY-MM-DDTHH:MM:SSZ"},
      {replace(ok, "09:40:00Z", "09:40:00.5Z"), "req.txt:7:|whole seconds"},
      {replace(ok, "09:40:00Z", "09:40:00+00:00"), "req.txt:7:|YYYY-MM-DDTHH:MM:SSZ"},
      {replace(ok, "2026-11-28T09:40:00Z", "2026-02-29T09:40:00Z"), "req.txt:7:|no such day"},
      {replace(ok, "2026-11-28T09:40:00Z", "2026-11-28T24:00:00Z"), "req.txt:7:|no such time"},
      {replace(ok, "2026-11-28T09:50:00Z", "2026-11-28T09:40:00Z"), "req.txt:8:|not later than not-before"},
      {replace(ok, "2026-11-28T09:50:00Z", "2026-11-28T09:30:00Z"), "req.txt:8:|not later than not-before"},
      {replace(ok, "0123456789abcdef0123456789abcdef", "0123456789ABCDEF0123456789ABCDEF"),
       "req.txt:9:|32 lowercase hex digits"},
      {replace(ok, "0123456789abcdef0123456789abcdef", "0123"), "req.txt:9:|32 lowercase hex digits"},
      {replace(ok, "GPU-5b9d6d3c", "GPU-5B9D6D3C"), "req.txt:3:|uppercase|lowercase"},
      {replace(ok, "GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8", "GPU-5b9d6d3c"), "req.txt:3:|8-4-4-4-12"},
      {replace(ok, "GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8", "3b:00.0"), "req.txt:3:|0000:3b:00.0"},
      {replace(ok, "GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8", "0000:3b:20.0"), "req.txt:3:|device at most 1f"},
      {replace(ok, "GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8", "0000:3B:00.0"), "req.txt:3:|uppercase"},
      {replace(ok, "GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8", "07"), "req.txt:3:|leading zero"},
      {replace(ok, "GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8", "256"), "req.txt:3:|not a GPU UUID"},
      {replace(ok, "GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8", "gpu0"), "req.txt:3:|not a GPU UUID"},
      {replace(ok, "power.limit", "power.limits"), "req.txt:4:|unknown class 'power.limits'|power.off"},
      {replace(ok, "power_limit_mw=250000", "power_limit_mw"), "req.txt:5:|no '='"},
      {replace(ok, "power_limit_mw=250000", "Power=1"), "req.txt:5:|lowercase letters"},
      {replace(ok, "power_limit_mw=250000", "p=two words"), "req.txt:5:|without spaces"},
      {replace(ok, "param: power_limit_mw=250000\n", "param: b=1\nparam: a=1\n"), "req.txt:6:|sort param lines"},
      {replace(ok, "param: power_limit_mw=250000\n", "param: a=1\nparam: a=2\n"), "req.txt:6:|given twice"},
      {replace(ok, "alice@example.org", "alice smith"), "req.txt:10:|requester 'alice smith'"},
      {replace(ok, "host: 3d1219c7c4c5404aaa1f6d2a48adfda4", "host: ../etc"), "req.txt:2:|machine-id"},
      {replace(ok, "budget", std::string(kMaxRequestBytes, 'x')), "at most 8192 bytes"},
      {replace(ok, "budget", std::string(1100, 'x')), "req.txt:11:|longer than 1024"},
      {replace(ok, "class: power.limit", "class power.limit"), "req.txt:4:|unknown field 'class power.limit'"},
      {std::string("gpugate-request v1\n"), "field 'host' is missing"},
  };
  for (const auto& c : cases) {
    auto r = parse_request(c.text, "req.txt");
    ASSERT_FALSE(r) << "accepted:\n" << c.text;
    std::string_view want = c.expect;
    while (!want.empty()) {
      auto bar = want.find('|');
      std::string part(want.substr(0, bar));
      EXPECT_NE(r.error().message.find(part), std::string::npos)
          << "error: " << r.error().message << "\nwanted: " << part;
      want = bar == std::string_view::npos ? "" : want.substr(bar + 1);
    }
  }
}

TEST(RequestText, TimesRoundTripAndAgreeWithTimegm) {
  for (int64_t t = 0; t < 253402300799; t += 86399 * 37 + 12345) {
    std::string text = format_request_time(t);
    auto back = parse_request_time(text);
    ASSERT_TRUE(back) << text;
    EXPECT_EQ(*back, t) << text;
    tm parts{};
    time_t tt = static_cast<time_t>(t);
    gmtime_r(&tt, &parts);
    EXPECT_EQ(parts.tm_year + 1900, std::stoi(text.substr(0, 4))) << text;
    EXPECT_EQ(parts.tm_mon + 1, std::stoi(text.substr(5, 2))) << text;
    EXPECT_EQ(parts.tm_mday, std::stoi(text.substr(8, 2))) << text;
  }
  EXPECT_TRUE(parse_request_time("2024-02-29T00:00:00Z"));
  EXPECT_FALSE(parse_request_time("2100-02-29T00:00:00Z"));
  EXPECT_TRUE(parse_request_time("2000-02-29T23:59:59Z"));
  EXPECT_FALSE(parse_request_time("1969-12-31T23:59:59Z"));
}

TEST(RequestText, GpuReferencesHaveThreeForms) {
  EXPECT_EQ(*classify_gpu_ref("GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8"), GpuRefKind::kUuid);
  EXPECT_EQ(*classify_gpu_ref("0000:3b:00.0"), GpuRefKind::kPciAddress);
  EXPECT_EQ(*classify_gpu_ref("0001:ff:1f.7"), GpuRefKind::kPciAddress);
  EXPECT_EQ(*classify_gpu_ref("0"), GpuRefKind::kIndex);
  EXPECT_EQ(*classify_gpu_ref("255"), GpuRefKind::kIndex);
  for (const char* bad : {"", "-1", "0000:3b:00.8", "0000:3b:00", "MIG-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8", "1e3"})
    EXPECT_FALSE(classify_gpu_ref(bad)) << bad;
}

TEST(RequestText, ValidateRejectsFieldsThatDoNotSurviveRendering) {
  auto r = *parse_request(sample_request(), "t");
  r.reason = "two\nlines";
  EXPECT_FALSE(validate_request(r));
  r = *parse_request(sample_request(), "t");
  r.params = {{"b", "1"}, {"a", "2"}};
  auto v = validate_request(r);
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("sort param lines"), std::string::npos) << v.error().message;
}

TEST(RequestScope, AcceptsTheRightHostGpuAndTime) {
  auto r = *parse_request(sample_request(), "t");
  std::vector<std::string> gpu = {"0000:3b:00.0", "GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8", "0"};
  EXPECT_TRUE(check_request_scope(r, r.host, gpu, r.not_before));
  EXPECT_TRUE(check_request_scope(r, r.host, gpu, r.not_after - 1));
}

TEST(RequestScope, RejectsWrongHost) {
  auto r = *parse_request(sample_request(), "t");
  std::vector<std::string> gpu = {r.gpu};
  auto e = check_request_scope(r, "ffffffffffffffffffffffffffffffff", gpu, r.not_before);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("for host 3d1219c7c4c5404aaa1f6d2a48adfda4, but this is host ffff"),
            std::string::npos)
      << e.error().message;
}

TEST(RequestScope, RejectsWrongGpu) {
  auto r = *parse_request(sample_request(), "t");
  std::vector<std::string> gpu = {"0000:3b:00.0", "GPU-00000000-0000-0000-0000-000000000000", "1"};
  auto e = check_request_scope(r, r.host, gpu, r.not_before);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("names GPU GPU-5b9d6d3c-4c1a-7e0f-2b6d-93e1f0a4c2d8, but the command targets the "
                                   "GPU known as 0000:3b:00.0, GPU-00000000"),
            std::string::npos)
      << e.error().message;
}

TEST(RequestScope, RejectsNotYetValidAndExpired) {
  auto r = *parse_request(sample_request(), "t");
  std::vector<std::string> gpu = {r.gpu};
  auto early = check_request_scope(r, r.host, gpu, r.not_before - 30);
  ASSERT_FALSE(early);
  EXPECT_NE(early.error().message.find("not valid yet: not-before 2026-11-28T09:40:00Z, now 2026-11-28T09:39:30Z (30 s "
                                       "early)"),
            std::string::npos)
      << early.error().message;
  auto late = check_request_scope(r, r.host, gpu, r.not_after);
  ASSERT_FALSE(late);
  EXPECT_NE(late.error().message.find("expired at 2026-11-28T09:50:00Z (not-after), now 2026-11-28T09:50:00Z"),
            std::string::npos)
      << late.error().message;
}

// The scope line: four forms, one way to write each, strict rejections that
// say how to write it, and no request without one.
TEST(RequestScopeLine, EveryFormRoundTrips) {
  struct Case {
    std::string text;
    ScopeKind kind;
    std::string cgroup;
  } cases[] = {
      {"any", ScopeKind::kAny, ""},
      {"uid=1000", ScopeKind::kUid, ""},
      {"uid=4294967294", ScopeKind::kUid, ""},
      {"uid=0", ScopeKind::kUid, ""},
      {"cgroup=/gpugate-exec/0123456789abcdef0123456789abcdef", ScopeKind::kCgroup,
       "/gpugate-exec/0123456789abcdef0123456789abcdef"},
      {"cgroup=/system.slice/system-getty.slice/getty@tty1.service", ScopeKind::kCgroup,
       "/system.slice/system-getty.slice/getty@tty1.service"},
      {"unit=train.service", ScopeKind::kUnit, "/system.slice/train.service"},
      {"unit=worker@3.service", ScopeKind::kUnit, "/system.slice/worker@3.service"},
      {"unit=run-r1b2.scope", ScopeKind::kUnit, "/system.slice/run-r1b2.scope"},
      {"unit=dev-disk-by\\x2dlabel.service", ScopeKind::kUnit, "/system.slice/dev-disk-by\\x2dlabel.service"},
  };
  for (const auto& c : cases) {
    auto scope = parse_scope(c.text);
    ASSERT_TRUE(scope) << c.text << ": " << scope.error().message;
    EXPECT_EQ(scope->kind, c.kind) << c.text;
    EXPECT_EQ(scope->cgroup_path(), c.cgroup) << c.text;
    EXPECT_EQ(format_scope(*scope), c.text);
    std::string text = replace(sample_request(), "scope: unit=train.service", "scope: " + c.text);
    auto r = parse_request(text, "req.txt");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->scope, *scope);
    EXPECT_EQ(render_request(*r), text);
  }
  EXPECT_EQ(parse_scope("uid=1000")->uid, 1000u);
  EXPECT_EQ(exec_cgroup_path("0123456789abcdef0123456789abcdef"), "/gpugate-exec/0123456789abcdef0123456789abcdef");
}

TEST(RequestScopeLine, RejectionsSayHowToWriteIt) {
  struct Case {
    std::string value;
    std::string expect;  // substrings, '|' separated
  } cases[] = {
      {"all", "none of the four forms|'any'|uid=N|cgroup=/PATH|unit=NAME.service"},
      {"ANY", "none of the four forms"},
      {"uid=", "decimal number"},
      {"uid=alice", "decimal number|--scope uid=NAME"},
      {"uid=01000", "without leading zeros"},
      {"uid=-1", "decimal number"},
      {"uid=4294967295", "no uid is above 4294967294"},
      {"uid=99999999999", "decimal number"},
      {"cgroup=", "does not start with '/'"},
      {"cgroup=system.slice", "does not start with '/'"},
      {"cgroup=/", "root cgroup|scope: any"},
      {"cgroup=/a//b", "empty component"},
      {"cgroup=/a/", "ends with '/'"},
      {"cgroup=/a/../b", "'.' or '..'"},
      {"cgroup=/a/./b", "'.' or '..'"},
      {"cgroup=/a b", "space"},
      {"cgroup=/sys/fs/cgroup/system.slice", "leave out /sys/fs/cgroup"},
      {"cgroup=/" + std::string(600, 'a'), "longer than 512"},
      {"unit=train", "not a .service or .scope"},
      {"unit=user.slice", "not a .service or .scope"},
      {"unit=.service", "no name before"},
      {"unit=worker@.service", "template|worker@3.service"},
      {"unit=a/b.service", "does not allow"},
      {"unit=a b.service", "does not allow"},
      {"unit=" + std::string(300, 'a') + ".service", "longer than 255"},
  };
  for (const auto& c : cases) {
    auto scope = parse_scope(c.value);
    ASSERT_FALSE(scope) << "accepted: " << c.value;
    std::string text = replace(sample_request(), "scope: unit=train.service", "scope: " + c.value);
    auto r = parse_request(text, "req.txt");
    ASSERT_FALSE(r) << "accepted: " << c.value;
    EXPECT_NE(r.error().message.find("req.txt:6: scope"), std::string::npos) << r.error().message;
    std::string_view want = c.expect;
    while (!want.empty()) {
      auto bar = want.find('|');
      std::string part(want.substr(0, bar));
      EXPECT_NE(r.error().message.find(part), std::string::npos)
          << c.value << ": " << r.error().message << "\nwanted: " << part;
      want = bar == std::string_view::npos ? "" : want.substr(bar + 1);
    }
  }
}

TEST(RequestScopeLine, IsRequiredOnceInItsPlace) {
  const std::string ok = sample_request();
  auto missing = parse_request(replace(ok, "scope: unit=train.service\n", ""), "req.txt");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("req.txt:6: field 'scope' is missing before 'not-before'"), std::string::npos)
      << missing.error().message;
  EXPECT_NE(missing.error().message.find("scope: 'any'"), std::string::npos) << missing.error().message;
  EXPECT_NE(missing.error().message.find("gpugate request new --scope"), std::string::npos) << missing.error().message;
  auto twice = parse_request(replace(ok, "scope: unit=train.service\n", "scope: any\nscope: any\n"), "req.txt");
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message.find("req.txt:7: duplicate field 'scope' (first on line 6)"), std::string::npos)
      << twice.error().message;
  auto early = parse_request(replace(replace(ok, "scope: unit=train.service\n", ""), "class: power.limit\n",
                                     "scope: any\nclass: power.limit\n"),
                             "req.txt");
  ASSERT_FALSE(early);
  EXPECT_NE(early.error().message.find("req.txt:4: field 'class' is missing before 'scope'"), std::string::npos)
      << early.error().message;
  auto late = parse_request(replace(ok, "scope: unit=train.service\nnot-before: 2026-11-28T09:40:00Z\n",
                                    "not-before: 2026-11-28T09:40:00Z\nscope: any\n"),
                            "req.txt");
  ASSERT_FALSE(late);
  EXPECT_NE(late.error().message.find("req.txt:6: field 'scope' is missing before 'not-before'"), std::string::npos)
      << late.error().message;
  auto param_after = parse_request(replace(ok, "scope: unit=train.service\n", "scope: any\nparam: z=1\n"), "req.txt");
  ASSERT_FALSE(param_after);
  EXPECT_NE(param_after.error().message.find("req.txt:7: field 'param' is out of order"), std::string::npos)
      << param_after.error().message;
}

TEST(Durations, ParseAndFormat) {
  EXPECT_EQ(*parse_duration("90s"), 90);
  EXPECT_EQ(*parse_duration("15m"), 900);
  EXPECT_EQ(*parse_duration("1h"), 3600);
  EXPECT_EQ(*parse_duration("2d"), 172800);
  for (const char* bad : {"", "h", "1", "0s", "-1h", "1.5h", "1w", "1H", "999999999s", " 1h"})
    EXPECT_FALSE(parse_duration(bad)) << bad;
  EXPECT_EQ(format_duration(3600), "1h");
  EXPECT_EQ(format_duration(5400), "90m");
  EXPECT_EQ(format_duration(90), "90s");
  EXPECT_EQ(format_duration(86400 * 30), "30d");
  for (int64_t s : {1, 59, 60, 61, 3599, 3600, 7200, 86399, 86400})
    EXPECT_EQ(*parse_duration(format_duration(s)), s) << s;
}
