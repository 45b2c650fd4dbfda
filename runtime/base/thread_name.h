// NameThisThread: gives the calling thread a name that top -H, ps -L, perf and gdb show, so an
// operator can tell a process's threads apart (a coordinator runs dozens, most named by gRPC).
// Linux keeps 15 bytes: longer names are cut. Failure is ignored (a name is only a label).
#pragma once

#include <string_view>

namespace rackserve::base {

void NameThisThread(std::string_view name);

}  // namespace rackserve::base
