// The generated tiny model the worker tests serve (vocab 512, context 512), written once per
// test binary into the test's temp directory.
#pragma once

#include <string>

namespace rackserve::worker::testing {

// The model directory; fails the calling test when the model cannot be written.
const std::string& TinyModelDir();

}  // namespace rackserve::worker::testing
