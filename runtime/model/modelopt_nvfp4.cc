#include "runtime/model/modelopt_nvfp4.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace rackserve::model {

bool IsNvfp4Linear(const io::Checkpoint& checkpoint, const std::string& module) {
  const std::string weight = module + ".weight";
  if (!checkpoint.Has(weight) || !checkpoint.Has(module + ".weight_scale")) return false;
  auto view = checkpoint.Get(weight);
  return view.ok() && (*view)->dtype == io::DType::kU8;
}

absl::StatusOr<numerics::Fp4Matrix> ReadNvfp4Linear(const io::Checkpoint& checkpoint,
                                                    const std::string& module, int64_t rows,
                                                    int64_t cols) {
  constexpr int64_t kBlock = 16;
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
  numerics::Fp4Matrix m;
  m.format = numerics::Fp4Format::kNvfp4;
  m.rows = rows;
  m.cols = cols;
  m.packed.assign(packed->data.begin(), packed->data.end());
  m.scales.assign(scales->data.begin(), scales->data.end());
  std::memcpy(&m.tensor_scale, scale2->data.data(), sizeof(float));
  RS_RETURN_IF_ERROR(numerics::ValidateFp4Matrix(m, scale2_name));
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
