#include "http.hpp"

#include <algorithm>
#include <mutex>

namespace gpugate::ship {

namespace {

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

struct Sink {
  std::string* out;
  size_t max;
};

size_t collect(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<Sink*>(user);
  if (s->out->size() < s->max) s->out->append(data, std::min(size * n, s->max - s->out->size()));
  return size * n;
}

}  // namespace

CurlPtr http_handle() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  return CurlPtr(curl_easy_init());
}

HttpAnswer http_post(CURL* c, const std::string& url, const std::vector<std::string>& headers, const std::string& body,
                     size_t max_body) {
  HttpAnswer a;
  curl_easy_reset(c);
  curl_slist* raw = nullptr;
  std::vector<std::string> lines = headers;
  lines.emplace_back("Expect:");  // no 100-continue round trip
  for (const std::string& h : lines) {
    curl_slist* n = curl_slist_append(raw, h.c_str());
    if (!n) {
      curl_slist_free_all(raw);
      a.transport_error = "out of memory";
      return a;
    }
    raw = n;
  }
  SlistPtr list(raw);
  Sink sink{&a.body, max_body};
  char err[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "gpugate-log-ship/1");
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    a.transport_error = err[0] ? err : curl_easy_strerror(rc);
    return a;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
  const char* type = nullptr;
  if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type) == CURLE_OK && type) a.content_type = type;
  return a;
}

std::string first_line(const std::string& body) {
  std::string l = body.substr(0, body.find('\n'));
  return l.empty() ? "(no body)" : l;
}

}  // namespace gpugate::ship
