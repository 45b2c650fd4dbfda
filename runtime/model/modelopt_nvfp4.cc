#include "runtime/model/modelopt_nvfp4.h"

#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/model/quant_config.h"

namespace rackserve::model {
namespace {
constexpr int64_t kBlock = 16;  // NVFP4 elements per E4M3 block scale
}  // namespace

bool IsNvfp4Linear(const io::Checkpoint& checkpoint, const std::string& module) {
  const std::string weight = module + ".weight";
  if (!checkpoint.Has(weight) || !checkpoint.Has(module + ".weight_scale")) return false;
  auto view = checkpoint.Get(weight);
  return view.ok() && (*view)->dtype == io::DType::kU8;
}

absl::Status CheckSupportedQuantConfig(const std::string& dir) {
  RS_ASSIGN_OR_RETURN(std::optional<QuantConfig> quant, QuantConfig::FromModelDir(dir));
  if (!quant.has_value() || quant->quant_algo.empty()) return absl::OkStatus();
  if (quant->quant_algo == "NVFP4" && quant->group_size == kBlock) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      dir, "/hf_quant_config.json: quant_algo ", quant->quant_algo, " with group_size ",
      quant->group_size, " is not supported (rackserve loads NVFP4 with group_size 16)"));
}

absl::StatusOr<Nvfp4LinearView> FindNvfp4Linear(const io::Checkpoint& checkpoint,
                                                const std::string& module, int64_t rows,
                                                int64_t cols) {
  if (cols % kBlock != 0) {
    return absl::InvalidArgumentError(absl::StrCat("NVFP4 linear ", module, ": input size ", cols,
                                                   " is not a multiple of ", kBlock));
  }
  const int64_t packed_shape[] = {rows, cols / 2};
  const int64_t scale_shape[] = {rows, cols / kBlock};
  RS_ASSIGN_OR_RETURN(const io::TensorView* packed,
                      checkpoint.GetChecked(module + ".weight", io::DType::kU8, packed_shape));
  RS_ASSIGN_OR_RETURN(
      const io::TensorView* scales,
      checkpoint.GetChecked(module + ".weight_scale", io::DType::kF8E4M3, scale_shape));
  const std::string scale2_name = module + ".weight_scale_2";
  RS_ASSIGN_OR_RETURN(const io::TensorView* scale2, checkpoint.Get(scale2_name));
  if (scale2->dtype != io::DType::kF32 || scale2->numel() != 1 || scale2->shape.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(checkpoint.FileOf(scale2_name), ": tensor ",
                                                   scale2_name,
                                                   " must be an F32 scalar (shape [] or [1])"));
  }
  Nvfp4LinearView view;
  view.packed = packed->data;
  view.scales = scales->data;
  std::memcpy(&view.tensor_scale, scale2->data.data(), sizeof(float));
  return view;
}

absl::StatusOr<numerics::Fp4Matrix> ReadNvfp4Linear(const io::Checkpoint& checkpoint,
                                                    const std::string& module, int64_t rows,
                                                    int64_t cols) {
  RS_ASSIGN_OR_RETURN(const Nvfp4LinearView view, FindNvfp4Linear(checkpoint, module, rows, cols));
  numerics::Fp4Matrix m;
  m.format = numerics::Fp4Format::kNvfp4;
  m.rows = rows;
  m.cols = cols;
  m.packed.assign(view.packed.begin(), view.packed.end());
  m.scales.assign(view.scales.begin(), view.scales.end());
  m.tensor_scale = view.tensor_scale;
  RS_RETURN_IF_ERROR(numerics::ValidateFp4Matrix(
      m, absl::StrCat(checkpoint.FileOf(module + ".weight"), ": ", module, ".weight")));
  return m;
}

absl::Status AddNvfp4Linear(io::SafetensorsWriter& writer, const std::string& module,
                            const numerics::Fp4Matrix& m) {
  RS_CHECK(m.format == numerics::Fp4Format::kNvfp4);
  RS_RETURN_IF_ERROR(
      writer.Add(module + ".weight", io::DType::kU8, {m.rows, m.cols / 2}, m.packed));
  RS_RETURN_IF_ERROR(writer.Add(module + ".weight_scale", io::DType::kF8E4M3,
                                {m.rows, m.scales_per_row()}, m.scales));
  const float scale2 = m.tensor_scale;
  return writer.AddF32(module + ".weight_scale_2", {}, std::span<const float>(&scale2, 1));
}

}  // namespace rackserve::model
