// HttpEndpoint: the coordinator's HTTP server beside gRPC, for Prometheus, probes and people.
//
// Routes (GET or HEAD; any other method is 405 with "Allow: GET, HEAD"; any other path is 404):
//   /metrics    the Prometheus text format 0.0.4 (coordinator/metrics_exposition.h)
//   /api/stats  JSON {"stats": RackStats, "topology": Topology}, proto field names kept and
//               default values printed (int64 fields are JSON strings, as proto3 JSON says)
//   /healthz    200 "ok" while the process serves
//   /readyz     200 "ready" when sources.ready(), else 503 with a one-line reason
//   /           the live dashboard page (coordinator/dashboard/index.html, built in)
// Every response carries "Cache-Control: no-store".
//
// Serves on its own threads from Start until destruction; the Sources callbacks are called on
// those threads, concurrently, and must be thread-safe and outlive the endpoint. Not copyable.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "coordinator/latency_histogram.h"
#include "rackserve/v1/rack.pb.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace rackserve::coordinator {

class HttpEndpoint {
 public:
  // Where the endpoint reads the rack's state; every member must be set.
  struct Sources {
    std::function<v1::RackStats()> stats;     // as Rack.GetStats answers
    std::function<v1::Topology()> topology;   // as Rack.GetTopology answers
    std::function<bool()> ready;              // every replica of the topology is live
    const RequestLatency* latency = nullptr;  // TTFT / TPOT histograms; not owned
  };

  // Binds `address` ("HOST:PORT"; port 0 picks a free one) and starts serving. INVALID_ARGUMENT
  // for a malformed address or a missing source, UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> Start(const std::string& address,
                                                             Sources sources);
  ~HttpEndpoint();  // stops serving and joins the server thread
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  const std::string& host() const { return host_; }
  int port() const { return port_; }  // the bound port (never 0)

 private:
  HttpEndpoint(Sources sources, std::string host);
  void Route();

  const Sources sources_;
  const std::string host_;
  int port_ = 0;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace rackserve::coordinator
