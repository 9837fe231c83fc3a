// Mutexes that clang's thread-safety analysis understands (core/thread_annotations.h): members
// they guard are declared QF_GUARDED_BY(mu_), and the analysis checks every access. Thin wrappers
// over the standard types; no extra cost.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#include "core/thread_annotations.h"

namespace quizflow {

class QF_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
  void lock() QF_ACQUIRE() { mu_.lock(); }
  void unlock() QF_RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

class QF_CAPABILITY("shared mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;
  void lock() QF_ACQUIRE() { mu_.lock(); }
  void unlock() QF_RELEASE() { mu_.unlock(); }
  void lock_shared() QF_ACQUIRE_SHARED() { mu_.lock_shared(); }
  void unlock_shared() QF_RELEASE_SHARED() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

// Holds a Mutex (or SharedMutex, exclusively) for its scope.
template <typename M>
class QF_SCOPED_CAPABILITY ScopedLock {
 public:
  explicit ScopedLock(M& mu) QF_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~ScopedLock() QF_RELEASE() { mu_.unlock(); }
  ScopedLock(const ScopedLock&) = delete;
  ScopedLock& operator=(const ScopedLock&) = delete;

 private:
  M& mu_;
};
using MutexLock = ScopedLock<Mutex>;
using WriterLock = ScopedLock<SharedMutex>;

// Holds a SharedMutex shared for its scope.
class QF_SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) QF_ACQUIRE_SHARED(mu) : mu_(mu) { mu_.lock_shared(); }
  ~ReaderLock() QF_RELEASE() { mu_.unlock_shared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& mu_;
};

// A condition variable used with a Mutex the caller holds.
class CondVar {
 public:
  void wait(Mutex& mu) QF_REQUIRES(mu) { cv_.wait(mu); }
  // Returns false on timeout.
  template <typename Clock, typename Duration>
  bool wait_until(Mutex& mu, const std::chrono::time_point<Clock, Duration>& t) QF_REQUIRES(mu) {
    return cv_.wait_until(mu, t) == std::cv_status::no_timeout;
  }
  void notify_one() { cv_.notify_one(); }
  void notify_all() { cv_.notify_all(); }

 private:
  std::condition_variable_any cv_;
};

}  // namespace quizflow
