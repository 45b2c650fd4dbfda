// A real Prometheus server (Debian's /usr/bin/prometheus) scrapes a live rack's /metrics every
// second while clients keep it busy. Its rate(rackserve_generation_tokens_total{scope="rack"}[10s])
// agrees with the coordinator's own 10 s window, and once traffic stops the rack counter it
// scraped equals the coordinator's delivered total exactly.
//
// The two figures are taken for the same instant (Prometheus is asked with `time` = when the
// coordinator's figure was read, a few seconds back so its scrapes are in), yet the tolerance is
// 25%: rate() sees only the samples scraped inside its window (1 s apart, each edge up to a scrape
// off, extrapolated), while the coordinator sums 100 ms buckets; batch boundaries and the shared
// CPUs make the load uneven from second to second.
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator/live_rack.h"

namespace rackserve::coordinator {
namespace {

constexpr char kPrometheus[] = "/usr/bin/prometheus";
constexpr char kRackSelector[] = "rackserve_generation_tokens_total{scope=\"rack\"}";

// A free loopback TCP port (bound and released; good enough for a test on loopback).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(address.sin_port);
}

// One instant query: the first result's value, or false when it has none (yet).
// `at`: the evaluation time (unix seconds), "" = now.
bool Query(httplib::Client& prometheus, const std::string& promql, const std::string& at,
           double* value) {
  httplib::Params params{{"query", promql}};
  if (!at.empty()) params.emplace("time", at);
  const httplib::Result result = prometheus.Get("/api/v1/query", params, httplib::Headers{});
  if (!result || result->status != 200) return false;
  const nlohmann::json json = nlohmann::json::parse(result->body, nullptr, false);
  if (json.is_discarded() || !json.contains("data") || !json["data"].contains("result")) {
    return false;
  }
  const nlohmann::json& vector = json["data"]["result"];
  if (!vector.is_array() || vector.empty() || !vector[0].contains("value")) return false;
  const nlohmann::json& sample = vector[0]["value"];  // [unix time, "value"]
  if (!sample.is_array() || sample.size() != 2 || !sample[1].is_string()) return false;
  char* end = nullptr;
  const std::string text = sample[1].get<std::string>();
  *value = std::strtod(text.c_str(), &end);
  return *end == '\0';
}

class PrometheusScrapeTest : public LiveRackTest {};

TEST_F(PrometheusScrapeTest, RackRateAndCounterAgreeWithTheCoordinator) {
  if (access(kPrometheus, X_OK) != 0) {
    GTEST_SKIP() << kPrometheus << " is missing: install Debian's prometheus (deploy/install-deps)";
  }
  StartTraffic(/*threads=*/2, /*requests=*/8, /*max_new=*/48);
  const int port = FreePort();
  ASSERT_GT(port, 0);
  {
    std::ofstream config(dir_ + "/prometheus.yml");
    config << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
           << "scrape_configs:\n  - job_name: rackserve\n    static_configs:\n"
           << "      - targets: ['" << http_address_ << "']\n";
  }
  Child prometheus({kPrometheus, "--config.file=" + dir_ + "/prometheus.yml",
                    "--storage.tsdb.path=" + dir_ + "/tsdb",
                    absl::StrCat("--web.listen-address=127.0.0.1:", port)},
                   dir_ + "/prometheus.log");
  httplib::Client api("127.0.0.1", port);
  api.set_connection_timeout(1);

  // The coordinator's 10 s figure, sampled every 250 ms with its time, so Prometheus can be
  // asked for its rate at the same instant (its data for an instant is complete a scrape later).
  struct Figure {
    double unix_seconds;
    double rate;
  };
  std::vector<Figure> figures;
  const std::string rate_query = absl::StrCat("rate(", kRackSelector, "[10s])");
  const absl::Time traffic_started = absl::Now();
  double prometheus_rate = 0, coordinator_rate = 0;
  double first_scraped = -1;  // when Prometheus first had the rack counter (unix seconds)
  bool answered = false;
  // Poll (never a fixed sleep) until Prometheus answers for an instant 3 s ago whose window was
  // full of traffic and of scrapes.
  for (const absl::Time deadline = absl::Now() + absl::Seconds(50);
       !answered && absl::Now() < deadline;) {
    figures.push_back(
        {absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()), RackRate(Stats(), 10)});
    const double then = figures.back().unix_seconds - 3;
    double ignored = 0;
    if (first_scraped < 0 && Query(api, kRackSelector, "", &ignored)) {
      first_scraped = figures.back().unix_seconds;
    }
    // rate() does not extrapolate a series back past its first sample: the window must hold
    // scrapes from end to end, and traffic all along.
    const double full =
        std::max(absl::ToDoubleSeconds(traffic_started - absl::UnixEpoch()), first_scraped) + 11;
    if (first_scraped >= 0 && then >= full) {
      // The recorded figure closest to `then`.
      const Figure* closest = &figures.front();
      for (const Figure& f : figures) {
        if (std::abs(f.unix_seconds - then) < std::abs(closest->unix_seconds - then)) closest = &f;
      }
      answered =
          Query(api, rate_query, absl::StrFormat("%.3f", closest->unix_seconds), &prometheus_rate);
      coordinator_rate = closest->rate;
    }
    absl::SleepFor(absl::Milliseconds(250));
  }
  ASSERT_TRUE(answered) << "Prometheus never answered " << rate_query << "\n"
                        << prometheus.Log() << Logs();
  ASSERT_GT(coordinator_rate, 0) << Logs();
  std::printf("rack rate: Prometheus %.1f tok/s, coordinator %.1f tok/s (10 s windows)\n",
              prometheus_rate, coordinator_rate);
  EXPECT_NEAR(prometheus_rate, coordinator_rate, 0.25 * coordinator_rate)
      << "Prometheus " << prometheus_rate << " tok/s, coordinator " << coordinator_rate;

  // The counter: stop traffic, let the rack settle, and wait for a scrape after that.
  StopTraffic();
  int64_t total = -1;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10); absl::Now() < deadline;) {
    const v1::RackStats stats = Stats();
    if (stats.requests_in_flight() == 0 && stats.rack().generated_tokens_total() == total) break;
    total = stats.rack().generated_tokens_total();
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_GT(total, 0);
  // The counter no longer moves, so the first scrape after this point must equal it (bounded).
  double scraped = -1;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10); absl::Now() < deadline;) {
    if (Query(api, kRackSelector, "", &scraped) && scraped == static_cast<double>(total)) break;
    absl::SleepFor(absl::Milliseconds(250));
  }
  EXPECT_EQ(scraped, static_cast<double>(total)) << "Prometheus' last scrape vs the coordinator";
}

}  // namespace
}  // namespace rackserve::coordinator
