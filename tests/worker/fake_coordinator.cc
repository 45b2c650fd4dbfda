#include "tests/worker/fake_coordinator.h"

#include "gtest/gtest.h"

namespace rackserve::worker::testing {

FakeCoordinator::FakeCoordinator(const std::string& listen) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  EXPECT_NE(port, 0);
  address_ = "127.0.0.1:" + std::to_string(port);
  response_.set_worker_id("worker-1");
  response_.set_heartbeat_interval_seconds(0.05);
}

FakeCoordinator::~FakeCoordinator() {
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
}

void FakeCoordinator::SetResponse(v1::RegisterResponse response) {
  std::lock_guard<std::mutex> lock(mu_);
  response_ = std::move(response);
}

void FakeCoordinator::SetRefusal(grpc::Status refusal) {
  std::lock_guard<std::mutex> lock(mu_);
  refusal_ = std::move(refusal);
}

void FakeCoordinator::RequestDrain() {
  std::lock_guard<std::mutex> lock(mu_);
  drain_ = true;
}

bool FakeCoordinator::WaitRegistrations(int n, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                      [&] { return static_cast<int>(registrations_.size()) >= n; });
}

bool FakeCoordinator::WaitHeartbeats(int n, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                      [&] { return static_cast<int>(heartbeats_.size()) >= n; });
}

std::vector<v1::RegisterRequest> FakeCoordinator::registrations() {
  std::lock_guard<std::mutex> lock(mu_);
  return registrations_;
}

std::vector<v1::Heartbeat> FakeCoordinator::heartbeats() {
  std::lock_guard<std::mutex> lock(mu_);
  return heartbeats_;
}

grpc::Status FakeCoordinator::Register(grpc::ServerContext* /*context*/,
                                       const v1::RegisterRequest* request,
                                       v1::RegisterResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  registrations_.push_back(*request);
  cv_.notify_all();
  if (!refusal_.ok()) return refusal_;
  *response = response_;
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::Heartbeats(
    grpc::ServerContext* /*context*/,
    grpc::ServerReaderWriter<v1::HeartbeatAck, v1::Heartbeat>* stream) {
  v1::Heartbeat heartbeat;
  while (stream->Read(&heartbeat)) {
    v1::HeartbeatAck ack;
    {
      std::lock_guard<std::mutex> lock(mu_);
      heartbeats_.push_back(heartbeat);
      ack.set_drain(drain_);
      cv_.notify_all();
    }
    if (!stream->Write(ack)) break;
  }
  return grpc::Status::OK;
}

}  // namespace rackserve::worker::testing
