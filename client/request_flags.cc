#include "client/request_flags.h"

#include <limits>

#include "runtime/base/status_macros.h"

namespace rackserve::client {

std::set<std::string> SamplingValueFlags() {
  return {"max-new-tokens", "temperature", "top-p", "top-k", "seed"};
}

std::set<std::string> SamplingSwitches() { return {"ignore-eos"}; }

absl::Status ReadSamplingFlags(const CommandArgs& args, RequestSpec* spec) {
  RS_ASSIGN_OR_RETURN(spec->max_new_tokens,
                      args.Int("max-new-tokens", spec->max_new_tokens, 1, 1 << 20));
  RS_ASSIGN_OR_RETURN(const double temperature,
                      args.Double("temperature", spec->temperature, 0.0, 100.0));
  RS_ASSIGN_OR_RETURN(const double top_p, args.Double("top-p", spec->top_p, 1e-6, 1.0));
  RS_ASSIGN_OR_RETURN(const int64_t top_k,
                      args.Int("top-k", spec->top_k, 0, std::numeric_limits<int32_t>::max()));
  RS_ASSIGN_OR_RETURN(const int64_t seed, args.Int("seed", static_cast<int64_t>(spec->seed), 0,
                                                   std::numeric_limits<int64_t>::max()));
  spec->temperature = static_cast<float>(temperature);
  spec->top_p = static_cast<float>(top_p);
  spec->top_k = static_cast<int32_t>(top_k);
  spec->seed = static_cast<uint64_t>(seed);
  spec->ignore_eos = spec->ignore_eos || args.Has("ignore-eos");
  return absl::OkStatus();
}

}  // namespace rackserve::client
