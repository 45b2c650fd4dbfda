// FakeCoordinator: a real CoordinatorService gRPC server on 127.0.0.1 for worker tests. It records
// every RegisterRequest and Heartbeat, answers Register with the configured assignments (or a
// configured error), and can ask workers to drain through their heartbeat stream.
// Thread-safety: all methods are thread-safe.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "rackserve/v1/worker.grpc.pb.h"

namespace rackserve::worker::testing {

class FakeCoordinator final : public v1::CoordinatorService::Service {
 public:
  // Starts the server on `listen` (port 0: picked by the OS).
  explicit FakeCoordinator(const std::string& listen = "127.0.0.1:0");
  ~FakeCoordinator() override;

  const std::string& address() const { return address_; }
  // Register answers with these assignments, or fails with `refusal` when it is not OK.
  void SetResponse(v1::RegisterResponse response);
  void SetRefusal(grpc::Status refusal);
  // The next HeartbeatAck of every stream carries drain = true.
  void RequestDrain();

  bool WaitRegistrations(int n, absl::Duration timeout);
  bool WaitHeartbeats(int n, absl::Duration timeout);
  std::vector<v1::RegisterRequest> registrations();
  std::vector<v1::Heartbeat> heartbeats();

  grpc::Status Register(grpc::ServerContext* context, const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override;
  grpc::Status Heartbeats(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::HeartbeatAck, v1::Heartbeat>* stream) override;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  v1::RegisterResponse response_;                   // guarded by mu_
  grpc::Status refusal_;                            // guarded by mu_
  bool drain_ = false;                              // guarded by mu_
  std::vector<v1::RegisterRequest> registrations_;  // guarded by mu_
  std::vector<v1::Heartbeat> heartbeats_;           // guarded by mu_
  std::string address_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace rackserve::worker::testing
