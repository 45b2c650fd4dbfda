// The coordinator's dashboard: one self-contained HTML page (coordinator/dashboard/index.html,
// inline CSS and JS, no external fetches) compiled into the binary, so it works from any build
// directory. The page polls /api/stats every second. Thread-safe (constant data).
#pragma once

#include <string_view>

namespace rackserve::coordinator {

// The page's bytes; valid for the whole life of the process.
std::string_view DashboardPage();

}  // namespace rackserve::coordinator
