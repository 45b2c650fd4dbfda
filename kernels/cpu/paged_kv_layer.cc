#include "kernels/cpu/paged_kv_layer.h"

#include "kernels/cpu/internal/argument_checks.h"
#include "runtime/base/status_macros.h"

namespace rackserve::kernels::cpu {

absl::Status ValidatePagedKvLayer(const PagedKvLayer& cache, std::string_view op) {
  RS_RETURN_IF_ERROR(internal::CheckNotNull(op, "cache.k", cache.k));
  RS_RETURN_IF_ERROR(internal::CheckNotNull(op, "cache.v", cache.v));
  RS_RETURN_IF_ERROR(internal::CheckPositive(op, "cache.num_blocks", cache.num_blocks));
  RS_RETURN_IF_ERROR(internal::CheckPositive(op, "cache.block_size", cache.block_size));
  RS_RETURN_IF_ERROR(internal::CheckPositive(op, "cache.num_kv_heads", cache.num_kv_heads));
  RS_RETURN_IF_ERROR(internal::CheckPositive(op, "cache.head_dim", cache.head_dim));
  return internal::CheckDisjoint(op, "cache.k", cache.k, cache.num_slots() * cache.slot_stride(),
                                 "cache.v", cache.v, cache.num_slots() * cache.slot_stride());
}

}  // namespace rackserve::kernels::cpu
