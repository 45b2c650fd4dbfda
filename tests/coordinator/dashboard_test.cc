// The dashboard page of a live, busy rack, rendered by headless Chromium (Debian's
// /usr/bin/chromium, --dump-dom after a few polls of /api/stats): the rack rate shows a non-zero
// number, the workers table has one row per VM with its state, the heat map one row per VM with
// one cell per GPU, and the latency table shows TTFT / TPOT counts.
#include <unistd.h>

#include <regex>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/live_rack.h"

namespace rackserve::coordinator {
namespace {

using ::testing::HasSubstr;

constexpr char kChromium[] = "/usr/bin/chromium";

class DashboardTest : public LiveRackTest {};

TEST_F(DashboardTest, ChromiumRendersLiveData) {
  if (access(kChromium, X_OK) != 0) {
    GTEST_SKIP() << kChromium << " is missing: install Debian's chromium (deploy/install-deps)";
  }
  StartTraffic(/*threads=*/1, /*requests=*/8, /*max_new=*/48);
  // Busy: the coordinator's own 10 s figure is non-zero (bounded wait).
  for (const absl::Time deadline = absl::Now() + kWait; absl::Now() < deadline;) {
    if (RackRate(Stats(), 10) > 0) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_GT(RackRate(Stats(), 10), 0) << Logs();

  const std::string url = absl::StrCat("http://", http_address_, "/");
  const std::vector<std::string> common = {kChromium,
                                           "--headless",
                                           "--no-sandbox",
                                           "--disable-gpu",
                                           "--disable-quic",
                                           "--no-first-run",
                                           "--disable-background-networking",
                                           "--disable-component-update",
                                           "--disable-sync",
                                           "--disable-dev-shm-usage",
                                           "--user-data-dir=" + dir_ + "/chromium",
                                           "--virtual-time-budget=5000"};
  std::vector<std::string> dump = common;
  dump.push_back("--dump-dom");
  dump.push_back(url);
  Child chromium(dump, dir_ + "/dom.html", dir_ + "/chromium.log");
  ASSERT_EQ(chromium.WaitExit(absl::Seconds(90)), 0) << chromium.ErrorLog();
  const std::string dom = chromium.Log();

  std::smatch match;
  ASSERT_TRUE(std::regex_search(dom, match, std::regex(R"(id="rack-rate">([0-9.]+)<)"))) << dom;
  EXPECT_GT(std::stod(match[1].str()), 0) << "rack rate on the page: " << match[1];
  for (int v = 0; v < kVms; ++v) {
    const std::string vm = absl::StrCat("vm", v);
    // Workers table: <tr data-vm="vmN"><td>vmN</td><td class="state state-ready">ready</td>...
    EXPECT_THAT(dom, HasSubstr(absl::StrCat("<tr data-vm=\"", vm, "\"><td>", vm,
                                            "</td><td class=\"state state-ready\">ready</td>")))
        << dom;
    EXPECT_THAT(dom, HasSubstr(absl::StrCat("class=\"heat-row\" data-vm=\"", vm, "\"")));
    EXPECT_THAT(dom, HasSubstr(absl::StrCat("data-device=\"", vm, "/0\"")));
  }
  // The status line of the last poll: "updated <time>", not "error: <why>".
  ASSERT_TRUE(std::regex_search(dom, match, std::regex(R"(id="status">([^<]*)<)"))) << dom;
  EXPECT_THAT(match[1].str(), ::testing::StartsWith("updated ")) << match[1];

  // A screenshot for people (kept when RACKSERVE_DASHBOARD_SCREENSHOT names a path).
  if (const char* screenshot = std::getenv("RACKSERVE_DASHBOARD_SCREENSHOT")) {
    std::vector<std::string> shot = common;
    shot.push_back("--window-size=1400,900");
    shot.push_back(absl::StrCat("--screenshot=", screenshot));
    shot.push_back(url);
    Child camera(shot, dir_ + "/screenshot.log");
    EXPECT_EQ(camera.WaitExit(absl::Seconds(90)), 0) << camera.Log();
  }
}

}  // namespace
}  // namespace rackserve::coordinator
