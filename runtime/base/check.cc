#include <cstdio>
#include <cstdlib>

#include "runtime/base/status_macros.h"

namespace rackserve::internal {

void CheckFailed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "rackserve: invariant broken at %s:%d: %s\n", file, line, expr);
  std::abort();
}

}  // namespace rackserve::internal
