// The Prometheus text rendering, parsed back line by line: every sample belongs to a family
// announced by # HELP and # TYPE, counters end in _total, label values are escaped, histogram
// buckets are cumulative and monotone with +Inf == _count, and values match the inputs.
#include "coordinator/metrics_exposition.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rackserve::coordinator {
namespace {

using ::testing::HasSubstr;

struct Sample {
  std::string name;    // the sample's metric name (with _bucket / _sum / _count)
  std::string labels;  // the text between { and }, or ""
  double value = 0;
};

// Parses the exposition; fails the test on any malformed line. `types` gets each family's type.
std::vector<Sample> Parse(const std::string& text, std::map<std::string, std::string>* types) {
  std::vector<Sample> samples;
  std::map<std::string, bool> helped;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      helped[line.substr(7, line.find(' ', 7) - 7)] = true;
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream fields(line.substr(7));
      std::string name, type;
      fields >> name >> type;
      EXPECT_TRUE(helped[name]) << "TYPE before HELP: " << line;
      EXPECT_EQ(types->count(name), 0u) << "family announced twice: " << name;
      (*types)[name] = type;
      continue;
    }
    EXPECT_NE(line[0], '#') << line;
    Sample sample;
    const size_t brace = line.find('{');
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) {
      ADD_FAILURE() << "no value: " << line;
      continue;
    }
    if (brace != std::string::npos && brace < space) {
      sample.name = line.substr(0, brace);
      const size_t close = line.rfind('}');
      EXPECT_EQ(close + 1, space) << line;
      sample.labels = line.substr(brace + 1, close - brace - 1);
    } else {
      sample.name = line.substr(0, space);
    }
    const std::string value = line.substr(space + 1);
    char* end = nullptr;
    sample.value = value == "+Inf" ? HUGE_VAL : std::strtod(value.c_str(), &end);
    if (value != "+Inf") {
      EXPECT_EQ(*end, '\0') << "bad value in: " << line;
    }
    samples.push_back(sample);
  }
  return samples;
}

// The family a sample belongs to: its name, or its name less a histogram suffix.
std::string FamilyOf(const std::string& name, const std::map<std::string, std::string>& types) {
  if (types.count(name)) return name;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string s = suffix;
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      const std::string base = name.substr(0, name.size() - s.size());
      if (types.count(base) && types.at(base) == "histogram") return base;
    }
  }
  return "";
}

v1::RackStats ExampleStats() {
  v1::RackStats stats;
  stats.mutable_rack()->set_generated_tokens_total(1234);
  stats.mutable_rack()->set_prompt_tokens_total(99);
  for (const char* name : {"vm0", "vm\"1\\"}) {
    v1::ScopeStats* vm = stats.add_vms();
    vm->set_name(name);
    vm->mutable_throughput()->set_generated_tokens_total(600);
    vm->set_state(std::string(name) == "vm0" ? "ready" : "dead");
    vm->set_running(3);
    vm->set_waiting(1);
    vm->set_kv_blocks_used(25);
    vm->set_kv_blocks_total(100);
    v1::ScopeStats* device = stats.add_devices();
    device->set_name(std::string(name) + "/0");
    device->mutable_throughput()->set_generated_tokens_total(600);
  }
  v1::ScopeStats* replica = stats.add_replicas();
  replica->set_name("r0");
  replica->mutable_throughput()->set_generated_tokens_total(1200);
  stats.set_requests_in_flight(5);
  stats.set_requests_queued(2);
  stats.set_requests_completed(40);
  stats.set_worker_generated_tokens_total(1200);
  stats.mutable_audit()->set_exact(true);
  return stats;
}

TEST(MetricsExpositionTest, EveryFamilyAndSampleIsWellFormed) {
  std::mt19937_64 rng(std::random_device{}());
  std::lognormal_distribution<double> latency(std::log(0.05), 1.5);
  LatencyHistogram ttft, tpot;
  for (int i = 0; i < 5000; ++i) ttft.Record(latency(rng));
  for (int i = 0; i < 300; ++i) tpot.Record(latency(rng) / 20);
  std::map<std::string, std::string> types;
  const std::string text = RenderPrometheusMetrics(ExampleStats(), ttft, tpot);
  const std::vector<Sample> samples = Parse(text, &types);
  ASSERT_FALSE(samples.empty());
  std::map<std::string, std::vector<Sample>> by_name;
  for (const Sample& s : samples) {
    const std::string family = FamilyOf(s.name, types);
    ASSERT_FALSE(family.empty()) << "sample without TYPE: " << s.name;
    if (types[family] == "counter") {
      EXPECT_THAT(family, ::testing::EndsWith("_total"));
    }
    by_name[s.name].push_back(s);
  }
  for (const auto& [family, type] : types) {
    EXPECT_THAT(type, ::testing::AnyOf("counter", "gauge", "histogram")) << family;
  }
  // Histograms: cumulative, monotone, exact at the exported bounds, +Inf == _count.
  for (const auto& [name, histogram] :
       {std::pair{"rackserve_time_to_first_token_seconds", &ttft},
        std::pair{"rackserve_time_per_output_token_seconds", &tpot}}) {
    EXPECT_EQ(types[name], "histogram");
    const std::vector<Sample>& buckets = by_name[std::string(name) + "_bucket"];
    ASSERT_EQ(buckets.size(), ExportedLatencyBounds().size() + 1) << name;
    EXPECT_GE(buckets.size(), 18u);
    EXPECT_LE(buckets.size(), 26u);
    for (size_t i = 0; i < buckets.size(); ++i) {
      if (i > 0) {
        EXPECT_GE(buckets[i].value, buckets[i - 1].value) << name << " " << i;
      }
      if (i + 1 < buckets.size()) {
        EXPECT_EQ(buckets[i].value,
                  histogram->CumulativeCountAtOrBelow(ExportedLatencyBounds()[i]));
      }
    }
    EXPECT_EQ(buckets.back().labels, "le=\"+Inf\"");
    ASSERT_EQ(by_name[std::string(name) + "_count"].size(), 1u);
    EXPECT_EQ(buckets.back().value, by_name[std::string(name) + "_count"][0].value);
    EXPECT_EQ(buckets.back().value, histogram->count());
    EXPECT_NEAR(by_name[std::string(name) + "_sum"][0].value, histogram->sum(),
                1e-12 * histogram->sum());
  }
  // The exported bounds are fine bounds, so the exported counts are exact.
  const std::vector<double>& fine = ttft.upper_bounds();
  for (double bound : ExportedLatencyBounds()) {
    EXPECT_NE(std::find(fine.begin(), fine.end(), bound), fine.end()) << bound;
  }
}

TEST(MetricsExpositionTest, ValuesAndLabelsComeFromTheStats) {
  const std::string text =
      RenderPrometheusMetrics(ExampleStats(), LatencyHistogram(), LatencyHistogram());
  EXPECT_THAT(text, HasSubstr("\nrackserve_generation_tokens_total{scope=\"rack\"} 1234\n"));
  EXPECT_THAT(text, HasSubstr("\nrackserve_prompt_tokens_total{scope=\"rack\"} 99\n"));
  EXPECT_THAT(text, HasSubstr("rackserve_generation_tokens_total{scope=\"vm\",vm=\"vm0\"} 600\n"));
  EXPECT_THAT(text, HasSubstr("rackserve_generation_tokens_total{scope=\"gpu\",vm=\"vm0\","
                              "gpu=\"0\"} 600\n"));
  EXPECT_THAT(text, HasSubstr("rackserve_generation_tokens_total{scope=\"replica\","
                              "replica=\"r0\"} 1200\n"));
  // vm"1\ escaped as vm\"1\\ .
  EXPECT_THAT(text, HasSubstr("rackserve_worker_up{vm=\"vm\\\"1\\\\\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("rackserve_worker_up{vm=\"vm0\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("rackserve_kv_cache_usage_ratio{vm=\"vm0\"} 0.25\n"));
  EXPECT_THAT(text, HasSubstr("\nrackserve_requests_running 5\n"));
  EXPECT_THAT(text, HasSubstr("\nrackserve_requests_waiting 2\n"));
  EXPECT_THAT(text, HasSubstr("\nrackserve_requests_completed_total 40\n"));
  EXPECT_THAT(text, HasSubstr("\nrackserve_audit_exact 1\n"));
  EXPECT_THAT(text, HasSubstr("\nrackserve_time_to_first_token_seconds_count 0\n"));
}

TEST(MetricsExpositionTest, EscapesLabelValues) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

}  // namespace
}  // namespace rackserve::coordinator
