#include "runtime/model/checkpoint_quantizer.h"

#include <cmath>
#include <filesystem>
#include <mutex>
#include <regex>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/io/checkpoint.h"
#include "runtime/io/safetensors_writer.h"
#include "runtime/model/internal/file_contents.h"
#include "runtime/model/model_config.h"
#include "runtime/model/modelopt_nvfp4.h"
#include "runtime/model/quant_config.h"
#include "runtime/numerics/fp4_matrix.h"

namespace rackserve::model {
namespace {

namespace fs = std::filesystem;

bool IsDecoderLinearWeight(const std::string& name) {
  static const std::regex pattern(
      R"(model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight)");
  return std::regex_match(name, pattern);
}

double NormalizedError(std::span<const float> ref, std::span<const float> got) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(ref[i]) - got[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

absl::Status CopyOtherFiles(const std::string& in_dir, const std::string& out_dir) {
  for (const fs::directory_entry& entry : fs::directory_iterator(in_dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename().string();
    if (name.ends_with(".safetensors") || name == "model.safetensors.index.json" ||
        name == "hf_quant_config.json") {
      continue;
    }
    std::error_code ec;
    fs::copy_file(entry.path(), fs::path(out_dir) / name, fs::copy_options::overwrite_existing, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot copy ", name, ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<QuantizationReport> QuantizeCheckpoint(const std::string& in_dir,
                                                      const std::string& out_dir,
                                                      const QuantizeOptions& options) {
  std::error_code ec;
  if (fs::exists(out_dir) && fs::equivalent(in_dir, out_dir, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("output directory ", out_dir, " is the input directory"));
  }
  RS_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::FromFile(in_dir + "/config.json"));
  RS_ASSIGN_OR_RETURN(std::unique_ptr<io::Checkpoint> checkpoint, io::Checkpoint::Open(in_dir));
  fs::create_directories(out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", out_dir, ": ", ec.message()));

  const std::vector<std::string> names = checkpoint->TensorNames();
  const int64_t total = static_cast<int64_t>(names.size());
  io::SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  writer.SetMetadata("producer", "rackserve-quantize");
  QuantizationReport report;
  double error_sum = 0;
  int64_t done = 0;
  std::mutex mu;  // guards writer, report, error_sum, done, first_error
  absl::Status first_error;

  auto quantize_range = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const std::string& name = names[i];
      absl::Status status;
      auto view = checkpoint->Get(name);
      if (!view.ok()) {
        status = view.status();
      } else if (IsDecoderLinearWeight(name)) {
        const io::TensorView& t = **view;
        const std::string module = name.substr(0, name.size() - std::string(".weight").size());
        if (t.shape.size() != 2) {
          status = absl::InvalidArgumentError(
              absl::StrCat(checkpoint->FileOf(name), ": tensor ", name, " is not 2-D"));
        } else if (IsNvfp4Linear(*checkpoint, module)) {
          status = absl::InvalidArgumentError(
              absl::StrCat(checkpoint->FileOf(name), ": tensor ", name, " is already NVFP4"));
        } else {
          auto values = checkpoint->ReadFloat(name, t.shape);
          absl::StatusOr<numerics::Fp4Matrix> m =
              values.ok() ? numerics::QuantizeFp4(
                                *values, t.shape[0], t.shape[1], numerics::Fp4Format::kNvfp4,
                                absl::StrCat(checkpoint->FileOf(name), ": ", name))
                          : values.status();
          if (!m.ok()) {
            status = m.status();
          } else {
            std::vector<float> back(values->size());
            numerics::DequantizeFp4(*m, back);
            const double err = NormalizedError(*values, back);
            std::lock_guard<std::mutex> lock(mu);
            status = AddNvfp4Linear(writer, module, *m);
            report.tensors_quantized++;
            report.bytes_in += static_cast<int64_t>(t.data.size());
            report.bytes_out += static_cast<int64_t>(m->packed.size() + m->scales.size() + 4);
            error_sum += err;
            if (err > report.max_error) {
              report.max_error = err;
              report.worst_tensor = name;
            }
          }
        }
      } else {
        const io::TensorView& t = **view;
        std::lock_guard<std::mutex> lock(mu);
        status =
            writer.Add(name, t.dtype, t.shape, std::vector<uint8_t>(t.data.begin(), t.data.end()));
        report.tensors_copied++;
        report.bytes_in += static_cast<int64_t>(t.data.size());
        report.bytes_out += static_cast<int64_t>(t.data.size());
      }
      std::lock_guard<std::mutex> lock(mu);
      if (!status.ok() && first_error.ok()) first_error = status;
      ++done;
      if (options.progress) options.progress(done, total);
    }
  };
  if (options.pool != nullptr) {
    options.pool->ParallelFor(total, 1, quantize_range);
  } else {
    quantize_range(0, total);
  }
  RS_RETURN_IF_ERROR(first_error);
  if (report.tensors_quantized == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(in_dir, " has no decoder linear weights (model.layers.<i>.*_proj.weight)"));
  }
  report.mean_error = error_sum / static_cast<double>(report.tensors_quantized);

  RS_RETURN_IF_ERROR(writer.WriteCheckpoint(out_dir, options.max_shard_bytes));
  RS_RETURN_IF_ERROR(CopyOtherFiles(in_dir, out_dir));
  QuantConfig quant;
  quant.quant_algo = "NVFP4";
  quant.group_size = 16;
  if (!config.tie_word_embeddings) quant.exclude_modules = {"lm_head"};
  RS_RETURN_IF_ERROR(
      internal::WriteFileContents(out_dir + "/hf_quant_config.json", quant.ToJson()));
  return report;
}

}  // namespace rackserve::model
