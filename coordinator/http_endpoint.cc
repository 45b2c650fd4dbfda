#include "coordinator/http_endpoint.h"

#include <sys/socket.h>

#include <charconv>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/dashboard/dashboard_page.h"
#include "coordinator/metrics_exposition.h"
#include "google/protobuf/util/json_util.h"
#include "httplib.h"

namespace rackserve::coordinator {
namespace {

constexpr absl::Duration kStartTimeout = absl::Seconds(10);

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) return "null";
  return json;
}

// Why the rack is not ready, from its topology: the replicas that are not "ready".
std::string NotReadyReason(const v1::Topology& topology) {
  std::string down;
  for (const v1::Replica& replica : topology.replicas()) {
    if (replica.state() != "ready") {
      absl::StrAppend(&down, down.empty() ? "" : ", ", replica.id(), " (", replica.state(), ")");
    }
  }
  return down.empty() ? "not ready\n" : absl::StrCat("not ready: replicas not live: ", down, "\n");
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpEndpoint>> HttpEndpoint::Start(const std::string& address,
                                                                  Sources sources) {
  if (!sources.stats || !sources.topology || !sources.ready || sources.latency == nullptr) {
    return absl::InvalidArgumentError(
        "HttpEndpoint sources: stats, topology, ready and latency must all be set");
  }
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon != std::string::npos) {
    const char* first = address.data() + colon + 1;
    const char* last = address.data() + address.size();
    const std::from_chars_result parsed = std::from_chars(first, last, port);
    if (parsed.ec != std::errc() || parsed.ptr != last) port = -1;
  }
  if (colon == std::string::npos || colon == 0 || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("http address \"", address, "\": expected HOST:PORT with PORT in 0..65535"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::unique_ptr<HttpEndpoint> endpoint(new HttpEndpoint(std::move(sources), host));
  httplib::Server& server = *endpoint->server_;
  endpoint->port_ = port == 0                         ? server.bind_to_any_port(host)
                    : server.bind_to_port(host, port) ? port
                                                      : -1;
  if (endpoint->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat(
        "http address \"", address, "\": cannot bind (port in use, or not a local address)"));
  }
  endpoint->thread_ = std::thread([&server] { server.listen_after_bind(); });
  // stop() only stops a running server: wait for it to run so the destructor cannot miss it.
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (!server.is_running() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  if (!server.is_running()) {
    return absl::UnavailableError(
        absl::StrCat("http address \"", address, "\": the server did not start"));
  }
  return endpoint;
}

HttpEndpoint::HttpEndpoint(Sources sources, std::string host)
    : sources_(std::move(sources)),
      host_(std::move(host)),
      server_(std::make_unique<httplib::Server>()) {
  Route();
}

HttpEndpoint::~HttpEndpoint() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

void HttpEndpoint::Route() {
  httplib::Server& server = *server_;
  server.set_default_headers({{"Cache-Control", "no-store"}});
  // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which would let a second
  // endpoint bind a port that is in use.
  server.set_socket_options([](socket_t socket) {
    const int yes = 1;
    setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.set_pre_routing_handler([](const httplib::Request& request, httplib::Response& response) {
    if (request.method == "GET" || request.method == "HEAD") {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    response.status = 405;
    response.set_header("Allow", "GET, HEAD");
    response.set_content(
        absl::StrCat("method ", request.method, " not allowed on ", request.path, ": use GET\n"),
        "text/plain");
    return httplib::Server::HandlerResponse::Handled;
  });
  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
    response.set_content(RenderPrometheusMetrics(sources_.stats(), sources_.latency->Ttft(),
                                                 sources_.latency->Tpot()),
                         kPrometheusContentType);
  });
  server.Get("/api/stats", [this](const httplib::Request&, httplib::Response& response) {
    response.set_content(absl::StrCat("{\"stats\": ", ToJson(sources_.stats()),
                                      ", \"topology\": ", ToJson(sources_.topology()), "}"),
                         "application/json");
  });
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& response) {
    response.set_content("ok\n", "text/plain");
  });
  server.Get("/readyz", [this](const httplib::Request&, httplib::Response& response) {
    if (sources_.ready()) {
      response.set_content("ready\n", "text/plain");
      return;
    }
    response.status = 503;
    response.set_content(NotReadyReason(sources_.topology()), "text/plain");
  });
  server.Get("/", [](const httplib::Request&, httplib::Response& response) {
    const std::string_view page = DashboardPage();
    response.set_content(page.data(), page.size(), "text/html; charset=utf-8");
  });
  server.Get(".*", [](const httplib::Request& request, httplib::Response& response) {
    response.status = 404;
    response.set_content(absl::StrCat("no such path: ", request.path,
                                      " (try /, /metrics, /api/stats, /healthz, /readyz)\n"),
                         "text/plain");
  });
}

}  // namespace rackserve::coordinator
