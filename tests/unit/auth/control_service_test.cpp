// What gpugated answers on its control socket, without a socket or a kernel:
// every member type-checked (the answer names the member and the type), no
// scope from the submitter, nothing that throws out, every decision recorded
// with whether the nonce was burned.
#include <gtest/gtest.h>

#include "control_fixture.hpp"

using namespace gpugate;
using namespace gpugate::test::control;
using gpugate::test::TempDir;

namespace {

void expect_has(const std::string& text, std::string_view want) {
  EXPECT_NE(text.find(want), std::string::npos) << "text: " << text << "\nwanted: " << want;
}

class Control : public ::testing::Test {
 protected:
  void SetUp() override {
    GrantServiceOptions options;
    options.cgroups = fake_cgroups({{"/gpugate-exec/x", 4242}});
    auto g = GrantService::open((state.path / "nonces").string(), signers.config(), kHost, kNow, options);
    ASSERT_TRUE(g) << g.error().message;
    service.emplace(std::move(*g));
  }
  ControlContext ctx() { return {devices, &store, sink, kNow, kBootNs, {}, {}}; }
  nlohmann::ordered_json ask(const std::string& line) { return service->answer(peer, line, ctx()); }
  nlohmann::ordered_json ask_json(const nlohmann::json& j) { return ask(j.dump()); }
  std::string nonce() {
    auto a = ask(R"({"op":"nonce"})");
    EXPECT_EQ(a["ok"], true) << a.dump();
    return a["nonce"];
  }
  nlohmann::json submit_of(const std::string& text, std::initializer_list<const gpugate::test::auth::SshKey*> who) {
    nlohmann::json sigs = nlohmann::json::array();
    for (const auto& s : signers.sign(text, who)) sigs.push_back({{"label", s.label}, {"armored", s.armored}});
    return {{"op", "submit"}, {"request", text}, {"signatures", sigs}};
  }

  Signers signers;
  TempDir state;
  DeviceTable devices = fake_devices();
  FakeStore store;
  RecordingSink sink;
  ControlPeer peer{4711, 0, 0};
  std::optional<ControlService> service;
};

}  // namespace

TEST_F(Control, WrongTypedMembersAreAnsweredNotThrown) {
  struct Case {
    std::string line;
    std::string expect;
  } cases[] = {
      {"", "not valid JSON"},
      {"{", "not valid JSON"},
      {"\xff\xfe", "not valid JSON"},
      {"[1,2]", "it is an array, not an object"},
      {"\"ping\"", "it is a string, not an object"},
      {"{}", "member \"op\" is missing"},
      {R"({"op":5})",
       "member \"op\" must be a string (one of ping, nonce, submit, grants, revoke, mmio, prune), not a number"},
      {R"({"op":null})", "not null"},
      {R"({"op":"dance"})", "unknown op \"dance\""},
      {R"({"op":"ping","x":1})", "ping: unknown member \"x\"; ping takes \"op\""},
      {R"({"op":"revoke","id":"7"})",
       "member \"id\" must be a grant id, a whole number from 1 to 4294967295, not a string"},
      {R"({"op":"revoke","id":-1})", "not a negative number"},
      {R"({"op":"revoke","id":1.5})", "not a number with a fraction or exponent"},
      {R"({"op":"revoke","id":0})", "not 0"},
      {R"({"op":"revoke","id":4294967296})", "not 4294967296"},
      {R"({"op":"revoke"})", "member \"id\" (a grant id, see gpugate grants) is missing"},
      {R"({"op":"submit"})", "member \"request\" (the request text) is missing"},
      {R"({"op":"submit","request":5,"signatures":[]})",
       "member \"request\" must be a string (the request text), not a number"},
      {R"({"op":"submit","request":"x"})", "member \"signatures\""},
      {R"({"op":"submit","request":"x","signatures":{}})", "must be an array"},
      {R"({"op":"submit","request":"..","signatures":[{"label":5,"armored":"x"}]})",
       "signatures[0]: member \"label\" must be a string (a name for messages, such as the file name), not a number"},
      {R"({"op":"submit","request":"..","signatures":[{"armored":7}]})", "member \"armored\" must be a string"},
      {R"({"op":"submit","request":"..","signatures":[{"label":"a"}]})",
       "member \"armored\" (the .sig file's text) is missing"},
      {R"({"op":"submit","request":"..","signatures":[5]})", "signatures[0] must be an object"},
      {R"({"op":"submit","request":"..","signatures":[{"armored":"x","key":"y"}]})", "unknown member \"key\""},
      {R"({"op":"submit","request":"..","signatures":[],"cgroup_id":7})",
       "member \"cgroup_id\" is not accepted: which processes may use a grant is part of the signed request"},
      {R"({"op":"submit","request":"..","signatures":[],"scope":"any"})", "member \"scope\" is not accepted"},
      {R"({"op":"ping","\u0001\u00e9":1})", "unknown member \"\\x01\\xc3\\xa9\""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    size_t before = sink.records.size();
    auto a = ask(c.line);
    EXPECT_EQ(a["ok"], false);
    ASSERT_TRUE(a["error"].is_string());
    expect_has(a["error"].get<std::string>(), c.expect);
    ASSERT_EQ(sink.records.size(), before + 1) << "every refusal is recorded";
    EXPECT_EQ(sink.records.back().first, "control.refused");
    EXPECT_FALSE(control_answer_text(a).empty());
  }
  auto many = nlohmann::json{{"op", "submit"}, {"request", "x"}, {"signatures", nlohmann::json::array()}};
  for (int i = 0; i < 33; i++) many["signatures"].push_back({{"armored", "x"}});
  expect_has(ask_json(many)["error"].get<std::string>(), "33 signatures; a request carries at most 32");
  EXPECT_EQ(ask(R"({"op":"ping"})")["ok"], true) << "and it keeps answering";
}

TEST_F(Control, ALastResortCatchAnswersAndRecordsAnInternalError) {
  store.throw_on_list = true;
  auto a = ask(R"({"op":"grants"})");
  EXPECT_EQ(a["ok"], false);
  expect_has(a["error"].get<std::string>(), "internal error while answering: the fake store throws");
  auto errors = sink.of_type("control.error");
  ASSERT_EQ(errors.size(), 1u);
  expect_has(errors[0]["error"].get<std::string>(), "the fake store throws");
  EXPECT_EQ(errors[0]["peer"]["pid"], 4711);
  store.throw_on_list = false;
  EXPECT_EQ(ask(R"({"op":"grants"})")["ok"], true);
}

TEST_F(Control, ASubmitGetsTheSignedScopeAndIsRecorded) {
  RequestSpec spec;
  spec.scope = "cgroup=/gpugate-exec/x";
  std::string n = nonce();
  auto text = make_request(n, spec);
  auto a = ask_json(submit_of(text, {&signers.alice}));
  ASSERT_EQ(a["ok"], true) << a.dump();
  EXPECT_EQ(a["scope"], "cgroup=/gpugate-exec/x");
  EXPECT_EQ(a["scope_id"], 4242);
  ASSERT_EQ(store.grants.size(), 1u);
  EXPECT_EQ(store.grants[0].scope, GG_SCOPE_CGROUP);
  EXPECT_EQ(store.grants[0].scope_id, 4242u);
  EXPECT_EQ(store.grants[0].devs, (std::vector<uint32_t>{kernel_dev(195, 0), kernel_dev(195, 255)}));
  auto installed = sink.of_type("grant.installed");
  ASSERT_EQ(installed.size(), 1u);
  EXPECT_EQ(installed[0]["scope"], "cgroup=/gpugate-exec/x");
  EXPECT_EQ(installed[0]["scope_cgroup"], "/gpugate-exec/x");
  EXPECT_EQ(installed[0]["scope_id"], 4242);
  EXPECT_EQ(installed[0]["request"], text);
  EXPECT_EQ(installed[0]["nonce"], n);

  auto list = ask(R"({"op":"grants"})");
  ASSERT_EQ(list["grants"].size(), 1u);
  EXPECT_EQ(list["grants"][0]["scope"], "cgroup");
  EXPECT_EQ(list["grants"][0]["signed_scope"], "cgroup=/gpugate-exec/x");
  EXPECT_EQ(list["grants"][0]["not_after"], kNow + 600);
  EXPECT_EQ(list["grants"][0]["not_before"], kNow - 5) << "clamped to the boot";
  uint32_t id = a["grant_id"];
  auto revoked = ask_json(nlohmann::json{{"op", "revoke"}, {"id", id}});
  EXPECT_EQ(revoked["ok"], true) << revoked.dump();
  EXPECT_TRUE(store.grants.empty());
  EXPECT_EQ(sink.of_type("grant.revoked").size(), 1u);
}

TEST_F(Control, RefusalRecordsSayWhetherTheNonceWasBurned) {
  // Not verified: kept.
  auto text = make_request(nonce());
  auto a = ask_json(submit_of(text, {&signers.carol}));
  EXPECT_EQ(a["ok"], false);
  auto refused = sink.of_type("grant.refused");
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0]["signatures_verified"], false);
  EXPECT_EQ(refused[0]["nonce_burned"], false);
  EXPECT_EQ(refused[0]["request"], text);
  // The kernel refuses the grant: verified, burned.
  store.fail_install = true;
  a = ask_json(submit_of(text, {&signers.alice}));
  EXPECT_EQ(a["ok"], false);
  expect_has(a["error"].get<std::string>(), "the kernel did not take the grant: grant map full");
  expect_has(a["error"].get<std::string>(), "nonce is spent");
  refused = sink.of_type("grant.refused");
  ASSERT_EQ(refused.size(), 2u);
  EXPECT_EQ(refused[1]["signatures_verified"], true);
  EXPECT_EQ(refused[1]["nonce_burned"], true);
  store.fail_install = false;
  a = ask_json(submit_of(text, {&signers.alice}));
  EXPECT_EQ(a["ok"], false);
  expect_has(a["error"].get<std::string>(), "already used");
  // A cap: verified, burned.
  RequestSpec many;
  many.params = {{"uses", "101"}};
  a = ask_json(submit_of(make_request(nonce(), many), {&signers.alice}));
  expect_has(a["error"].get<std::string>(), "max_grant_uses");
  EXPECT_EQ(sink.of_type("grant.refused").back()["nonce_burned"], true);
}

TEST_F(Control, WithoutAGrantStoreNothingIsGrantedAndTheNonceIsKept) {
  auto text = make_request(nonce());
  ControlContext no_store{devices, nullptr, sink, kNow, kBootNs, {}, {}};
  auto a = service->answer(peer, submit_of(text, {&signers.alice}).dump(), no_store);
  EXPECT_EQ(a["ok"], false);
  EXPECT_EQ(sink.of_type("grant.refused").back()["nonce_burned"], false);
  EXPECT_EQ(ask_json(submit_of(text, {&signers.alice}))["ok"], true);
}

TEST_F(Control, ExpiredAndSpentGrantsEnd) {
  auto a = ask_json(submit_of(make_request(nonce()), {&signers.alice}));
  ASSERT_EQ(a["ok"], true) << a.dump();
  service->expire(ctx());
  EXPECT_EQ(store.grants.size(), 1u) << "still live";
  ControlContext later{devices, &store, sink, kNow + 601, kBootNs + 601'000'000'000ull, {}, {}};
  service->expire(later);
  EXPECT_TRUE(store.grants.empty());
  auto ended = sink.of_type("grant.ended");
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0]["reason"], "window ended");
}

// MMIO evidence (gpugate mmio capture) is recorded as root reports it, with
// who reported it; nobody else may put evidence in the ledger, and only the
// capture's own members, each of its type, are accepted.
TEST_F(Control, MmioEvidenceIsRecordedFromRootOnlyWithItsReporter) {
  nlohmann::json capture{{"lines", 12},
                         {"writes", 3},
                         {"gpu_writes", 2},
                         {"named_writes", 2},
                         {"lost_events", 0},
                         {"trace_sha256", std::string(64, 'a')},
                         {"command", {"insmod", "bochs.ko"}},
                         {"command_status", 0},
                         {"by_register", nlohmann::json::array({{{"gpu", "0000:00:02.0"},
                                                                 {"bar", 2},
                                                                 {"register", "VBE_DISPI_INDEX_XRES"},
                                                                 {"class", "other"},
                                                                 {"writes", 1}}})}};
  auto a = ask_json({{"op", "mmio"}, {"capture", capture}});
  EXPECT_EQ(a["ok"], true) << a.dump();
  auto recs = sink.of_type("mmio.capture");
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0]["reported_by"]["pid"], 4711);
  EXPECT_EQ(recs[0]["reported_by"]["uid"], 0);
  EXPECT_EQ(recs[0]["by_register"][0]["register"], "VBE_DISPI_INDEX_XRES");
  EXPECT_EQ(recs[0]["command"][1], "bochs.ko");

  peer.uid = 1000;
  a = ask_json({{"op", "mmio"}, {"capture", capture}});
  EXPECT_EQ(a["ok"], false);
  expect_has(a["error"], "uid 1000 may not record MMIO evidence");
  peer.uid = 0;
  struct Case {
    nlohmann::json request;
    std::string expect;
  } cases[] = {
      {{{"op", "mmio"}}, "member \"capture\""},
      {{{"op", "mmio"}, {"capture", "x"}}, "must be an object"},
      {{{"op", "mmio"}, {"capture", capture}, {"extra", 1}}, "mmio: unknown member \"extra\""},
      {{{"op", "mmio"}, {"capture", {{"verdict", "allowed"}}}}, "unknown member \"verdict\""},
      {{{"op", "mmio"}, {"capture", {{"lines", "12"}}}}, "member \"lines\" is a string"},
      {{{"op", "mmio"}, {"capture", {{"lines", -1}}}}, "member \"lines\" is a negative number"},
      {{{"op", "mmio"}, {"capture", {{"by_register", 5}}}}, "member \"by_register\" is a number"},
  };
  for (const auto& c : cases) {
    auto r = ask_json(c.request);
    EXPECT_EQ(r["ok"], false) << c.request.dump();
    expect_has(r.value("error", std::string()), c.expect);
  }
  EXPECT_EQ(sink.of_type("mmio.capture").size(), 1u) << "nothing refused was recorded as evidence";
  EXPECT_GE(sink.of_type("control.refused").size(), 8u);
}

// gpugate log prune's op: root only, this daemon's ledger only, one cut,
// every refusal recorded; the prune itself is the ledger's (Prune.* tests).
TEST_F(Control, PruneIsRootsOnTheDaemonsOwnLedgerWithOneCut) {
  std::vector<ledger::PruneCut> asked;
  auto with_prune = [&] {
    auto c = ctx();
    c.prune = [&](const ledger::PruneCut& cut) -> Result<nlohmann::ordered_json> {
      asked.push_back(cut);
      return nlohmann::ordered_json{{"first_seq", 138}};
    };
    c.ledger_dir = state.path.string();
    return c;
  };
  std::string dir = state.path.string();
  auto ask_prune = [&](const ControlPeer& who, const nlohmann::json& req) {
    return service->answer(who, req.dump(), with_prune());
  };
  size_t before = sink.records.size();
  auto ok = ask_prune(peer, {{"op", "prune"}, {"ledger", dir}, {"before_seq", 150}});
  ASSERT_EQ(ok["ok"], true) << ok.dump();
  EXPECT_EQ(ok["pruned"]["first_seq"], 138);
  EXPECT_EQ(ok["pruned"]["by"]["pid"], 4711);
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].before_seq, 150u);
  EXPECT_EQ(sink.records.size(), before) << "the ledger records the prune itself (ledger.pruned)";

  struct Case {
    ControlPeer who;
    nlohmann::json req;
    std::string expect;
  };
  std::vector<Case> cases = {
      {{4711, 1000, 1000}, {{"op", "prune"}, {"ledger", dir}, {"before_seq", 150}}, "uid 1000 may not remove"},
      {peer, {{"op", "prune"}, {"ledger", "/elsewhere"}, {"before_seq", 150}}, "this daemon writes"},
      {peer, {{"op", "prune"}, {"before_seq", 150}}, "member \"ledger\""},
      {peer, {{"op", "prune"}, {"ledger", dir}}, "exactly one of"},
      {peer, {{"op", "prune"}, {"ledger", dir}, {"before_seq", 1}, {"before_ns", 2}}, "exactly one of"},
      {peer, {{"op", "prune"}, {"ledger", dir}, {"before_seq", -1}}, "must be an unsigned number"},
      {peer, {{"op", "prune"}, {"ledger", dir}, {"before_ns", "x"}}, "must be an integer"},
      {peer, {{"op", "prune"}, {"ledger", dir}, {"before_seq", 1}, {"all", true}}, "unknown member \"all\""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.req.dump());
    size_t n = sink.records.size();
    auto a = ask_prune(c.who, c.req);
    EXPECT_EQ(a["ok"], false) << a.dump();
    expect_has(a.value("error", std::string()), c.expect);
    EXPECT_EQ(sink.records.size(), n + 1) << "every refusal is recorded";
  }
  EXPECT_EQ(asked.size(), 1u) << "no refused request reached the ledger";
  auto none = ask(nlohmann::json{{"op", "prune"}, {"ledger", dir}, {"before_seq", 1}}.dump());
  EXPECT_EQ(none["ok"], false);
  expect_has(none["error"], "writes no ledger it can prune");
}
