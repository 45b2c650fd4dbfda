#include "tests/worker/test_model.h"

#include <unistd.h>

#include "gtest/gtest.h"
#include "runtime/model/model_generator.h"

namespace rackserve::worker::testing {

const std::string& TinyModelDir() {
  static const std::string* dir = [] {
    auto* d = new std::string(::testing::TempDir() + "/rackserve_worker_test_tiny_" +
                              std::to_string(getpid()));
    model::RandomModelOptions options;
    options.config = *model::PresetModelConfig("tiny");
    options.seed = 9;
    options.with_tokenizer = false;
    const absl::Status s = model::WriteRandomModel(*d, options);
    EXPECT_TRUE(s.ok()) << s;
    return d;
  }();
  return *dir;
}

}  // namespace rackserve::worker::testing
