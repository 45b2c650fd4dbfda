#include "runtime/parallel/llama_shard.h"

#include <memory>
#include <mutex>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/io/checkpoint.h"
#include "runtime/model/modelopt_nvfp4.h"
#include "runtime/parallel/fp4_slice.h"

namespace rackserve::parallel {
namespace {

// The part of a linear a rank holds: `size` rows or columns from `begin`.
struct LinearSlice {
  bool columns = false;  // row-parallel linears are split along their input (column) dimension
  int64_t begin = 0;
  int64_t size = 0;
};

LinearSlice SliceOf(const ShardPlan& plan, const model::ModelConfig& c, std::string_view suffix) {
  const int64_t d = c.head_dim;
  if (suffix == "self_attn.q_proj") return {false, plan.q_head_begin * d, plan.num_q_heads * d};
  if (suffix == "self_attn.k_proj" || suffix == "self_attn.v_proj") {
    return {false, plan.kv_head_begin * d, plan.num_kv_heads * d};
  }
  if (suffix == "self_attn.o_proj") return {true, plan.q_head_begin * d, plan.num_q_heads * d};
  if (suffix == "mlp.gate_proj" || suffix == "mlp.up_proj") {
    return {false, plan.ffn_begin, plan.ffn_size};
  }
  RS_CHECK(suffix == "mlp.down_proj");
  return {true, plan.ffn_begin, plan.ffn_size};
}

// INVALID_ARGUMENT unless [begin, begin + size) lies inside [0, limit) and is not empty.
absl::Status CheckRange(const char* what, int64_t begin, int64_t size, int64_t limit,
                        const std::string& config_path) {
  if (begin >= 0 && size >= 1 && begin <= limit - size) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("shard plan: ", what, " [", begin, ", ",
                                                 begin + size, ") do not fit the ", limit, " of ",
                                                 config_path));
}

absl::Status CheckPlanFits(const ShardPlan& plan, const model::ModelConfig& c,
                           const std::string& config_path) {
  RS_RETURN_IF_ERROR(WorldConfig::Create(plan.world.tp, plan.world.pp, plan.world.rank).status());
  RS_RETURN_IF_ERROR(CheckRange("layers", plan.layers.begin, plan.layers.size(),
                                c.num_hidden_layers, config_path));
  RS_RETURN_IF_ERROR(CheckRange("query heads", plan.q_head_begin, plan.num_q_heads,
                                c.num_attention_heads, config_path));
  RS_RETURN_IF_ERROR(CheckRange("kv heads", plan.kv_head_begin, plan.num_kv_heads,
                                c.num_key_value_heads, config_path));
  RS_RETURN_IF_ERROR(
      CheckRange("FFN columns", plan.ffn_begin, plan.ffn_size, c.intermediate_size, config_path));
  return CheckRange("vocabulary rows", plan.vocab_begin, plan.vocab_size, c.vocab_size,
                    config_path);
}

absl::StatusOr<numerics::Fp4Matrix> Slice(const Fp4MatrixView& full, const LinearSlice& slice,
                                          const std::string& name) {
  if (slice.columns) return SliceFp4Cols(full, slice.begin, slice.size, name);
  return SliceFp4Rows(full, slice.begin, slice.size);
}

// The slice of the ModelOpt NVFP4 linear `module` of logical shape [rows, cols], copied from the
// memory-mapped tensors (the same checks as model::ReadNvfp4Linear).
absl::StatusOr<numerics::Fp4Matrix> LoadNvfp4Slice(const io::Checkpoint& checkpoint,
                                                   const std::string& module,
                                                   model::LinearShape shape,
                                                   const LinearSlice& slice) {
  const std::string weight_name = module + ".weight";
  RS_ASSIGN_OR_RETURN(const model::Nvfp4LinearView view,
                      model::FindNvfp4Linear(checkpoint, module, shape.rows, shape.cols));
  Fp4MatrixView full;
  full.format = numerics::Fp4Format::kNvfp4;
  full.rows = shape.rows;
  full.cols = shape.cols;
  full.packed = view.packed;
  full.scales = view.scales;
  full.tensor_scale = view.tensor_scale;
  const std::string name = absl::StrCat(checkpoint.FileOf(weight_name), ": ", weight_name);
  RS_ASSIGN_OR_RETURN(numerics::Fp4Matrix m, Slice(full, slice, name));
  RS_RETURN_IF_ERROR(numerics::ValidateFp4Matrix(m, name));
  return m;
}

// The slice of float linear `module`: the whole tensor quantized (so that the per-tensor scale is
// the unsharded one), then sliced.
absl::StatusOr<numerics::Fp4Matrix> LoadQuantizedSlice(const io::Checkpoint& checkpoint,
                                                       const std::string& module,
                                                       model::LinearShape shape,
                                                       const LinearSlice& slice,
                                                       numerics::Fp4Format format) {
  const std::string weight_name = module + ".weight";
  const int64_t dims[] = {shape.rows, shape.cols};
  RS_ASSIGN_OR_RETURN(const std::vector<float> values, checkpoint.ReadFloat(weight_name, dims));
  const std::string name = absl::StrCat(checkpoint.FileOf(weight_name), ": ", weight_name);
  RS_ASSIGN_OR_RETURN(const numerics::Fp4Matrix full,
                      numerics::QuantizeFp4(values, shape.rows, shape.cols, format, name));
  return Slice(ViewOf(full), slice, name);
}

// Rows [begin, begin + rows) of the float tensor `name`, which must have shape [shape_rows,
// shape_cols].
absl::StatusOr<std::vector<float>> ReadRows(const io::Checkpoint& checkpoint,
                                            const std::string& name, int64_t shape_rows,
                                            int64_t shape_cols, int64_t begin, int64_t rows) {
  RS_ASSIGN_OR_RETURN(const io::TensorView* view, checkpoint.Get(name));
  if (view->shape != std::vector<int64_t>{shape_rows, shape_cols}) {
    std::string actual;
    for (const int64_t d : view->shape) absl::StrAppend(&actual, actual.empty() ? "" : ", ", d);
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "' in '", checkpoint.FileOf(name), "' has shape [", actual,
                     "], expected [", shape_rows, ", ", shape_cols, "]"));
  }
  return checkpoint.ReadFloatRows(name, begin, begin + rows);
}

}  // namespace

absl::StatusOr<LlamaShard> LoadLlamaShard(const std::string& dir, const ShardPlan& plan,
                                          const model::LoadOptions& options) {
  LlamaShard shard;
  shard.plan = plan;
  const std::string config_path = dir + "/config.json";
  RS_ASSIGN_OR_RETURN(shard.config, model::ModelConfig::FromFile(config_path));
  const model::ModelConfig& c = shard.config;
  RS_RETURN_IF_ERROR(CheckPlanFits(plan, c, config_path));
  RS_RETURN_IF_ERROR(model::CheckSupportedQuantConfig(dir));
  RS_ASSIGN_OR_RETURN(std::unique_ptr<io::Checkpoint> checkpoint, io::Checkpoint::Open(dir));

  const std::string embed_name = "model.embed_tokens.weight";
  const int64_t norm_shape[] = {c.hidden_size};
  if (plan.world.first_stage()) {
    RS_ASSIGN_OR_RETURN(shard.embed_tokens,
                        ReadRows(*checkpoint, embed_name, c.vocab_size, c.hidden_size,
                                 plan.vocab_begin, plan.vocab_size));
  }
  if (plan.world.last_stage()) {
    RS_ASSIGN_OR_RETURN(shard.final_norm, checkpoint->ReadFloat("model.norm.weight", norm_shape));
    const std::string head_name = c.tie_word_embeddings ? embed_name : "lm_head.weight";
    RS_ASSIGN_OR_RETURN(shard.lm_head, ReadRows(*checkpoint, head_name, c.vocab_size, c.hidden_size,
                                                plan.vocab_begin, plan.vocab_size));
  }

  const int64_t num_layers = plan.layers.size();
  shard.layers.resize(static_cast<size_t>(num_layers));
  for (int64_t i = 0; i < num_layers; ++i) {
    const int64_t layer = plan.layers.begin + i;
    model::LlamaLayerWeights& w = shard.layers[static_cast<size_t>(i)];
    RS_ASSIGN_OR_RETURN(
        w.input_norm,
        checkpoint->ReadFloat(model::LayerModuleName(layer, "input_layernorm.weight"), norm_shape));
    RS_ASSIGN_OR_RETURN(
        w.post_attention_norm,
        checkpoint->ReadFloat(model::LayerModuleName(layer, "post_attention_layernorm.weight"),
                              norm_shape));
  }

  // Linear layers, spread over the pool (quantizing float checkpoints dominates the load).
  constexpr auto kLinears = static_cast<int64_t>(model::kLlamaLinearModules.size());
  std::mutex error_mu;
  absl::Status first_error;
  auto load_range = [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t local = k / kLinears;
      const auto slot = static_cast<size_t>(k % kLinears);
      const std::string_view suffix = model::kLlamaLinearModules[slot];
      const std::string module = model::LayerModuleName(plan.layers.begin + local, suffix);
      const model::LinearShape shape = model::LlamaLinearShape(c, suffix);
      const LinearSlice slice = SliceOf(plan, c, suffix);
      absl::StatusOr<numerics::Fp4Matrix> linear =
          model::IsNvfp4Linear(*checkpoint, module)
              ? LoadNvfp4Slice(*checkpoint, module, shape, slice)
              : LoadQuantizedSlice(*checkpoint, module, shape, slice, options.quantize_format);
      if (!linear.ok()) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (first_error.ok()) first_error = linear.status();
        continue;
      }
      shard.layers[static_cast<size_t>(local)].linears[slot] = *std::move(linear);
    }
  };
  if (options.pool != nullptr) {
    options.pool->ParallelFor(num_layers * kLinears, 1, load_range);
  } else {
    load_range(0, num_layers * kLinears);
  }
  RS_RETURN_IF_ERROR(first_error);
  return shard;
}

}  // namespace rackserve::parallel
