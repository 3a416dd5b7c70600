// The sim script reader (parse_sim_script): a member of the wrong type or out
// of range is an error naming the line, the member and the type it must have;
// nothing throws.
#include <gtest/gtest.h>

#include <cstdint>
#include <sstream>
#include <string>

#include "gpugate/sim_engine.hpp"

using namespace gpugate;

namespace {

// One valid call with one more member appended.
std::string line_with(const std::string& member) {
  return R"({"device":"/dev/full","ioctl":"0xc020462a",)" + member + "}";
}

Result<std::vector<SimCall>> parse(const std::string& script) {
  std::istringstream in(script);
  return parse_sim_script(in, "s.jsonl");
}

}  // namespace

TEST(SimScript, WrongMemberTypesAreErrorsThatNameLineMemberAndType) {
  struct Case {
    std::string member;
    std::string expected;  // the fragments the error must contain, after the line and the member
    std::string got;
  };
  const Case cases[] = {
      {R"("pid":"x")", "an unsigned 32-bit integer", R"(got string "x")"},
      {R"("ret":[1])", "a signed 64-bit integer", "got array"},
      {R"("ret":1.5)", "a signed 64-bit integer", "got 1.5"},
      {R"("ret":9223372036854775808)", "a signed 64-bit integer", "got 9223372036854775808"},
      {R"("nv_status":-1)", "an unsigned 32-bit integer", "got -1"},
      {R"("nv_status":4294967296)", "an unsigned 32-bit integer", "got 4294967296"},
      {R"("uid":true)", "an unsigned 32-bit integer", "got true"},
      {R"("tid":null)", "an unsigned 32-bit integer", "got null"},
      {R"("cgroup_id":{"id":1})", "an unsigned 64-bit integer", "got object"},
      {R"("cgroup_id":-3)", "an unsigned 64-bit integer", "got -3"},
      {R"("comm":7)", "a string", "got 7"},
      {R"("arg":[0])", "a hex string", "got array"},
      {R"("params":12)", "a hex string", "got 12"},
  };
  for (const auto& c : cases) {
    auto member = c.member.substr(0, c.member.find(':'));  // "pid" with its quotes
    Result<std::vector<SimCall>> r = std::vector<SimCall>{};
    ASSERT_NO_THROW(r = parse("# a comment\n\n" + line_with(c.member) + "\n")) << c.member;
    ASSERT_FALSE(r.ok()) << c.member;
    const auto& msg = r.error().message;
    EXPECT_EQ(msg.rfind("s.jsonl:3: " + member + " must be " + c.expected, 0), 0u) << msg;
    EXPECT_NE(msg.find(c.got), std::string::npos) << msg;
  }
}

TEST(SimScript, DeviceAndIoctlOfTheWrongTypeAreNotCalledMissing) {
  auto device = parse(R"({"device":3,"ioctl":"0x1"})");
  ASSERT_FALSE(device.ok());
  EXPECT_EQ(device.error().message, R"(s.jsonl:1: "device" must be a string (the node's path), got 3)");
  auto ioctl = parse(R"({"device":"/dev/full","ioctl":3221505578})");
  ASSERT_FALSE(ioctl.ok());
  EXPECT_NE(ioctl.error().message.find(R"("ioctl" must be a string)"), std::string::npos) << ioctl.error().message;
  auto missing = parse(R"({"device":"/dev/full"})");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find(R"(missing "ioctl")"), std::string::npos);
}

TEST(SimScript, IntegersAtTheirLimitsAndDefaults) {
  auto r = parse(line_with(R"("ret":-9223372036854775808,"nv_status":4294967295,"pid":4294967295,)"
                           R"("uid":0,"cgroup_id":18446744073709551615,"comm":"nvidia-smi")") +
                 "\n" + line_with(R"("pid":7)"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 2u);
  const auto& a = (*r)[0];
  EXPECT_EQ(a.ret, INT64_MIN);
  EXPECT_EQ(a.nv_status, std::optional<uint32_t>(UINT32_MAX));
  EXPECT_EQ(a.pid, UINT32_MAX);
  EXPECT_EQ(a.tid, UINT32_MAX);  // tid defaults to the pid
  EXPECT_EQ(a.uid, 0u);
  EXPECT_EQ(a.cgroup_id, UINT64_MAX);
  EXPECT_EQ(a.comm, "nvidia-smi");
  const auto& b = (*r)[1];
  EXPECT_EQ(b.ret, 0);
  EXPECT_FALSE(b.nv_status.has_value());
  EXPECT_EQ(b.tid, 7u);
  EXPECT_EQ(b.cgroup_id, 1u);
  EXPECT_EQ(b.comm, "gpugate-sim");
}

// "at_ms" gives a call its own time, counted from the simulation's start.
TEST(SimScript, ACallMayCarryItsOwnTime) {
  auto r = parse(line_with(R"("at_ms":1500)") + "\n" + line_with(R"("pid":7)"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)[0].at_ns, std::optional<uint64_t>(1'500'000'000ull));
  EXPECT_FALSE((*r)[1].at_ns.has_value()) << "unset: the clock when the call is read";
  for (const char* bad : {R"("at_ms":-1)", R"("at_ms":"1s")", R"("at_ms":1.5)"}) {
    auto e = parse(line_with(bad));
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_NE(e.error().message.find(R"("at_ms" must be milliseconds after the start)"), std::string::npos)
        << e.error().message;
  }
}

TEST(SimScript, AnyBytesNeverThrow) {
  // Lines that are JSON but not what the reader expects, and lines that are not JSON.
  const std::string lines[] = {"[]",
                               "1",
                               "\"x\"",
                               "{",
                               "{\"device\":\"/dev/full\",\"ioctl\":\"0x\"}",
                               "{\"device\":\"/dev/full\",\"ioctl\":\"0xc020462a\",\"arg\":\"0\"}",
                               std::string("{\"device\":\"\xff\"}"),
                               std::string(1, '\0')};
  for (const auto& l : lines) {
    Result<std::vector<SimCall>> r = std::vector<SimCall>{};
    EXPECT_NO_THROW(r = parse(l)) << l;
    EXPECT_FALSE(r.ok()) << l;
  }
}
