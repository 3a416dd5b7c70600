// Result<T>: a value or an Error, for every fallible call in libgpugate.
// g++ 12 has no std::expected; this keeps one name to swap later.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace gpugate {

// An error a user can act on: what, why, and (where known) how to fix it.
struct Error {
  std::string message;
  int code = 0;  // errno, or 0

  [[nodiscard]] std::string what() const { return message; }
};

inline Error make_error(std::string message, int code = 0) { return Error{std::move(message), code}; }

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  [[nodiscard]] const Error& error() const { return std::get<Error>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  [[nodiscard]] const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

}  // namespace gpugate
