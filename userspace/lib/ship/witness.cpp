// `gpugate log ship --witness URL`: the HTTP side of a C2SP tlog-witness
// add-checkpoint request (c2sp.org/tlog-witness), libcurl. The shipping loop
// (ship.cpp) decides what to send and what an answer means.
#include <cerrno>

#include <fmt/format.h>

#include "gpugate/ship.hpp"
#include "http.hpp"

namespace gpugate::ship {

std::string witness_request(uint64_t old_size, std::span<const merkle::Hash> proof, const std::string& note) {
  std::string body = fmt::format("old {}\n", old_size);
  for (const auto& h : proof) body += merkle::to_base64(h) + "\n";
  body += "\n";
  body += note;
  return body;
}

Result<WitnessReply> witness_add_checkpoint(const std::string& url, const std::string& body) {
  CurlPtr curl = http_handle();
  if (!curl) return make_error(fmt::format("witness {}: cannot set up libcurl", url), EAGAIN);
  constexpr size_t kMaxAnswer = 64 * 1024;  // cosignature lines are short
  HttpAnswer a = http_post(curl.get(), url, {"Content-Type: text/plain; charset=utf-8"}, body, kMaxAnswer);
  if (!a.transport_error.empty())
    return make_error(fmt::format("witness {}: cannot send the checkpoint: {}; is the witness up and reachable?", url,
                                  a.transport_error),
                      EAGAIN);
  return WitnessReply{a.status, std::move(a.content_type), std::move(a.body)};
}

}  // namespace gpugate::ship
