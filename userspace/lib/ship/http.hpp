// One HTTP POST through libcurl, shared by the collector destination
// (dest_http.cpp) and the tlog-witness client (witness.cpp); internal to
// userspace/lib/ship.
#pragma once

#include <curl/curl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace gpugate::ship {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;

// An answer, or why none came: transport_error is set when the request did
// not complete (no connection, a timeout, out of memory); then status is 0.
struct HttpAnswer {
  long status = 0;
  std::string content_type;
  std::string body;  // at most max_body bytes of it
  std::string transport_error;
};

// A handle for http_post, after the one-time global set-up; null if libcurl
// cannot make one.
CurlPtr http_handle();

// POSTs body to url on handle (reset first, so one handle serves many
// requests) with these header lines and "Expect:" (no 100-continue round
// trip); keeps the first max_body bytes of the answer.
HttpAnswer http_post(CURL* handle, const std::string& url, const std::vector<std::string>& headers,
                     const std::string& body, size_t max_body);

// The first line of an answer, for messages.
std::string first_line(const std::string& body);

}  // namespace gpugate::ship
