// ThreadPool: a fixed set of worker threads that run data-parallel loops.
//
// ParallelFor splits [0, n) into contiguous chunks, runs them on the pool's threads and the
// calling thread, and returns when every chunk is done. One ParallelFor runs at a time per
// pool (calls from several threads are serialized); calling ParallelFor from inside a chunk
// of the same pool is a programming error (it would deadlock) and aborts.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace rackserve::base {

class ThreadPool {
 public:
  // num_threads counts the caller: ThreadPool(1) runs everything on the calling thread.
  // 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) on disjoint chunks covering [0, n). Chunks hold at least `grain`
  // indices (except the last). fn must be safe to call concurrently on different chunks.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop();
  // Claims and runs chunks of the current job until none is left.
  void RunChunks();

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // serializes ParallelFor calls

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  bool stop_ = false;                                          // guarded by mu_
  uint64_t generation_ = 0;                                    // guarded by mu_
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;  // guarded by mu_
  int64_t n_ = 0, chunk_ = 0, next_ = 0;                       // guarded by mu_
  int64_t pending_ = 0;  // chunks not finished; guarded by mu_
};

}  // namespace rackserve::base
