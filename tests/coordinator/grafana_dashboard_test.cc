// deploy/grafana/rackserve-dashboard.json: a valid Grafana dashboard (schemaVersion, a Prometheus
// datasource variable, the promised panels) whose every query names only metrics that
// RenderPrometheusMetrics emits.
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "coordinator/metrics_exposition.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rackserve::coordinator {
namespace {

using json = nlohmann::json;

// Every sample name of the exposition (histograms: _bucket, _sum, _count), with every scope.
std::set<std::string> EmittedMetricNames() {
  v1::RackStats stats;
  v1::ScopeStats* vm = stats.add_vms();
  vm->set_name("vm0");
  stats.add_devices()->set_name("vm0/0");
  stats.add_replicas()->set_name("r0");
  std::set<std::string> names;
  std::istringstream in(RenderPrometheusMetrics(stats, LatencyHistogram(), LatencyHistogram()));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    names.insert(line.substr(0, line.find_first_of("{ ")));
  }
  return names;
}

TEST(GrafanaDashboardTest, ParsesAndQueriesOnlyEmittedMetrics) {
  std::ifstream file(RACKSERVE_GRAFANA_DASHBOARD);
  ASSERT_TRUE(file) << "cannot read " << RACKSERVE_GRAFANA_DASHBOARD;
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const json dashboard = json::parse(text, nullptr, false);
  ASSERT_FALSE(dashboard.is_discarded()) << RACKSERVE_GRAFANA_DASHBOARD << " is not JSON";
  ASSERT_TRUE(dashboard.is_object());
  ASSERT_TRUE(dashboard.contains("schemaVersion") && dashboard["schemaVersion"].is_number());
  EXPECT_GE(dashboard["schemaVersion"].get<int>(), 36);
  EXPECT_TRUE(dashboard.contains("title") && dashboard["title"].is_string());

  // A datasource variable of type prometheus, used by the panels.
  bool datasource_variable = false;
  ASSERT_TRUE(dashboard.contains("templating") && dashboard["templating"].contains("list"));
  for (const json& variable : dashboard["templating"]["list"]) {
    if (variable.value("type", "") == "datasource" && variable.value("query", "") == "prometheus") {
      datasource_variable = true;
    }
  }
  EXPECT_TRUE(datasource_variable) << "no Prometheus datasource variable";

  const std::set<std::string> emitted = EmittedMetricNames();
  const std::regex metric(R"(rackserve_[a-z0-9_]+)");
  ASSERT_TRUE(dashboard.contains("panels") && dashboard["panels"].is_array());
  std::set<std::string> used;
  std::string all_exprs;
  for (const json& panel : dashboard["panels"]) {
    const std::string title = panel.value("title", "");
    EXPECT_FALSE(title.empty()) << panel.dump();
    ASSERT_TRUE(panel.contains("targets") && panel["targets"].is_array()) << title;
    EXPECT_FALSE(panel["targets"].empty()) << title;
    for (const json& target : panel["targets"]) {
      ASSERT_TRUE(target.contains("expr") && target["expr"].is_string()) << title;
      const std::string expr = target["expr"].get<std::string>();
      all_exprs += expr + "\n";
      int found = 0;
      for (std::sregex_iterator it(expr.begin(), expr.end(), metric), end; it != end; ++it) {
        ++found;
        used.insert(it->str());
        EXPECT_TRUE(emitted.count(it->str())) << title << ": " << it->str() << " is not emitted";
      }
      EXPECT_GT(found, 0) << title << ": no rackserve metric in " << expr;
    }
  }
  // The promised panels: rack and per-VM tok/s, TTFT / TPOT quantiles, KV usage, worker up.
  EXPECT_THAT(all_exprs, ::testing::HasSubstr("rackserve_generation_tokens_total{scope=\"rack\""));
  EXPECT_THAT(all_exprs, ::testing::HasSubstr("rackserve_generation_tokens_total{scope=\"vm\""));
  EXPECT_THAT(all_exprs, ::testing::HasSubstr(
                             "histogram_quantile(0.99, sum by (le) (rate(rackserve_time_to_first"));
  EXPECT_THAT(all_exprs, ::testing::HasSubstr("histogram_quantile(0.5, sum by (le) "
                                              "(rate(rackserve_time_per_output_token_seconds"));
  for (const char* name : {"rackserve_kv_cache_usage_ratio", "rackserve_worker_up"}) {
    EXPECT_TRUE(used.count(name)) << name;
  }
}

}  // namespace
}  // namespace rackserve::coordinator
