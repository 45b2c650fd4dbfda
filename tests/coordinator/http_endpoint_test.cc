// HttpEndpoint over a real loopback socket with fake sources: every route's status, body and
// content type, 404 / 405, /readyz flipping to 503 with a reason, and Start's errors.
#include "coordinator/http_endpoint.h"

#include <atomic>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"

namespace rackserve::coordinator {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class HttpEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    latency_.RecordRequest(0.05, 1.05, 101);
    auto endpoint = HttpEndpoint::Start("127.0.0.1:0", Sources());
    ASSERT_TRUE(endpoint.ok()) << endpoint.status();
    endpoint_ = std::move(*endpoint);
    ASSERT_GT(endpoint_->port(), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", endpoint_->port());
  }

  HttpEndpoint::Sources Sources() {
    HttpEndpoint::Sources sources;
    sources.stats = [] {
      v1::RackStats stats;
      stats.mutable_rack()->set_generated_tokens_total(1234);
      v1::ThroughputWindow* window = stats.mutable_rack()->add_windows();
      window->set_window_seconds(10);
      window->set_generated_tokens_per_second(56.5);
      stats.add_vms()->set_name("vm0");
      return stats;
    };
    sources.topology = [] {
      v1::Topology topology;
      topology.set_model("/models/tiny");
      topology.add_vms()->set_name("vm0");
      v1::Replica* replica = topology.add_replicas();
      replica->set_id("r0");
      replica->set_state("down");
      return topology;
    };
    sources.ready = [this] { return ready_.load(); };
    sources.latency = &latency_;
    return sources;
  }

  RequestLatency latency_;
  std::atomic<bool> ready_{false};
  std::unique_ptr<HttpEndpoint> endpoint_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpEndpointTest, Healthz) {
  const httplib::Result result = client_->Get("/healthz");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->body, "ok\n");
  EXPECT_EQ(result->get_header_value("Cache-Control"), "no-store");
}

TEST_F(HttpEndpointTest, ReadyzFollowsReadyWithAReason) {
  httplib::Result result = client_->Get("/readyz");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 503);
  EXPECT_THAT(result->body, HasSubstr("r0 (down)"));
  EXPECT_EQ(std::count(result->body.begin(), result->body.end(), '\n'), 1);
  ready_ = true;
  result = client_->Get("/readyz");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
}

TEST_F(HttpEndpointTest, MetricsInTextFormat) {
  const httplib::Result result = client_->Get("/metrics");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_THAT(result->get_header_value("Content-Type"), StartsWith("text/plain; version=0.0.4"));
  EXPECT_THAT(result->body, HasSubstr("rackserve_generation_tokens_total{scope=\"rack\"} 1234\n"));
  EXPECT_THAT(result->body, HasSubstr("rackserve_time_to_first_token_seconds_count 1\n"));
  EXPECT_THAT(result->body, HasSubstr("rackserve_time_per_output_token_seconds_count 1\n"));
}

TEST_F(HttpEndpointTest, ApiStatsIsJsonWithProtoFieldNames) {
  const httplib::Result result = client_->Get("/api/stats");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
  const nlohmann::json json = nlohmann::json::parse(result->body, nullptr, false);
  ASSERT_FALSE(json.is_discarded()) << result->body;
  ASSERT_TRUE(json.contains("stats") && json.contains("topology")) << result->body;
  EXPECT_EQ(json["stats"]["rack"]["generated_tokens_total"], "1234");  // int64: a JSON string
  EXPECT_EQ(json["stats"]["rack"]["windows"][0]["generated_tokens_per_second"], 56.5);
  EXPECT_EQ(json["stats"]["requests_completed"], "0");  // defaults are printed
  EXPECT_EQ(json["topology"]["model"], "/models/tiny");
  EXPECT_EQ(json["topology"]["vms"][0]["name"], "vm0");
}

TEST_F(HttpEndpointTest, DashboardPage) {
  const httplib::Result result = client_->Get("/");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_THAT(result->get_header_value("Content-Type"), StartsWith("text/html"));
  for (const char* id : {"rack-rate", "rate-chart", "vm-heatmap", "workers", "latency", "audit"}) {
    EXPECT_THAT(result->body, HasSubstr(absl::StrCat("id=\"", id, "\""))) << id;
  }
  EXPECT_THAT(result->body, HasSubstr("/api/stats"));
  EXPECT_THAT(result->body, ::testing::Not(HasSubstr("http://")));  // self-contained
  EXPECT_THAT(result->body, ::testing::Not(HasSubstr("https://")));
}

TEST_F(HttpEndpointTest, UnknownPathIs404) {
  const httplib::Result result = client_->Get("/nope");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 404);
  EXPECT_THAT(result->body, HasSubstr("/nope"));
}

TEST_F(HttpEndpointTest, NonGetIs405) {
  const httplib::Result post = client_->Post("/metrics", "x", "text/plain");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(post->get_header_value("Allow"), "GET, HEAD");
  EXPECT_THAT(post->body, HasSubstr("POST"));
  const httplib::Result del = client_->Delete("/healthz");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 405);
}

TEST_F(HttpEndpointTest, StartRejectsBadAddressesAndMissingSources) {
  for (const char* address : {"127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000", ":80", "host:-1"}) {
    const auto endpoint = HttpEndpoint::Start(address, Sources());
    ASSERT_FALSE(endpoint.ok()) << address;
    EXPECT_EQ(endpoint.status().code(), absl::StatusCode::kInvalidArgument) << address;
    EXPECT_THAT(endpoint.status().message(), HasSubstr(address));
  }
  HttpEndpoint::Sources missing = Sources();
  missing.ready = nullptr;
  const auto endpoint = HttpEndpoint::Start("127.0.0.1:0", missing);
  ASSERT_FALSE(endpoint.ok());
  EXPECT_EQ(endpoint.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(endpoint.status().message(), HasSubstr("ready"));
}

TEST_F(HttpEndpointTest, StartReportsAPortInUse) {
  const std::string address = absl::StrCat("127.0.0.1:", endpoint_->port());
  const auto second = HttpEndpoint::Start(address, Sources());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr(address));
}

}  // namespace
}  // namespace rackserve::coordinator
