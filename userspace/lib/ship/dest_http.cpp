// The HTTP(S) collector destination (--to http(s)://HOST/PREFIX), libcurl:
//   POST PREFIX/records     application/x-ndjson, one record per line;
//                           Gpugate-Host: <host-id>, Gpugate-First-Seq: <seq of the first line>
//   POST PREFIX/checkpoint  text/plain, the signed note; Gpugate-Host, Gpugate-Tree-Size
// 2xx: stored (a collector skips records below its own next seq, so a batch
// sent again is not stored twice); 409: it disagrees (a gap, or another
// checkpoint of that size); 408, 429, 5xx and no connection: try again.
// docs/ledger.md has the protocol.
#include <cerrno>
#include <memory>

#include <fmt/format.h>

#include "gpugate/ship.hpp"
#include "http.hpp"

namespace gpugate::ship {

namespace {

Error transient(std::string msg) { return make_error(std::move(msg), EAGAIN); }

// Only the start of an answer goes into messages.
constexpr size_t kAnswerBytes = 4096;

class HttpDestination final : public Destination {
 public:
  explicit HttpDestination(std::string url) : url_(std::move(url)) {
    while (url_.size() > 1 && url_.back() == '/') url_.pop_back();
  }

  [[nodiscard]] std::string name() const override { return url_; }

  Result<void> begin(const std::string& host_id) override {
    host_ = host_id;
    if (!curl_) curl_ = http_handle();
    if (!curl_) return transient(fmt::format("{}: cannot set up libcurl", url_));
    return {};
  }

  Result<void> send_records(uint64_t first_seq, std::span<const std::string> lines) override {
    std::string body;
    for (const auto& l : lines) {
      body += l;
      body += '\n';
    }
    return post("/records", "application/x-ndjson", body, fmt::format("Gpugate-First-Seq: {}", first_seq),
                fmt::format("records {}..{}", first_seq, first_seq + lines.size() - 1));
  }

  Result<void> send_checkpoint(uint64_t size, const std::string& note) override {
    return post("/checkpoint", "text/plain; charset=utf-8", note, fmt::format("Gpugate-Tree-Size: {}", size),
                fmt::format("checkpoint {}", size));
  }

 private:
  Result<void> post(const char* path, const char* type, const std::string& body, const std::string& extra,
                    const std::string& what) {
    std::string url = url_ + path;
    HttpAnswer a = http_post(curl_.get(), url, {std::string("Content-Type: ") + type, "Gpugate-Host: " + host_, extra},
                             body, kAnswerBytes);
    if (!a.transport_error.empty())
      return transient(
          fmt::format("{}: cannot send {}: {}; is the collector up and reachable?", url, what, a.transport_error));
    long status = a.status;
    if (status >= 200 && status < 300) return {};
    std::string msg = fmt::format("{}: the collector answered {} to {}: {}", url, status, what, first_line(a.body));
    if (status == 408 || status == 429 || status >= 500) return transient(msg + "; it is retried");
    if (status == 409)
      return make_error(msg +
                        "; the collector holds other records or another checkpoint there: compare its copy "
                        "with this ledger (gpugate log verify) before shipping again");
    return make_error(msg +
                      "; check the URL (POST PREFIX/records and PREFIX/checkpoint) and the collector's "
                      "configuration");
  }

  std::string url_, host_;
  CurlPtr curl_;
};

}  // namespace

std::unique_ptr<Destination> http_destination(const std::string& url) { return std::make_unique<HttpDestination>(url); }

}  // namespace gpugate::ship
