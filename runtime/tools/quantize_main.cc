// rackserve-quantize: Hugging Face checkpoint directory in (bf16/fp16/fp32), NVFP4 checkpoint out
// in NVIDIA ModelOpt's layout, with a progress bar and a summary of the quantization error.
#include <chrono>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "runtime/base/thread_pool.h"
#include "runtime/model/checkpoint_quantizer.h"
#include "runtime/tools/command_line.h"
#include "runtime/tools/progress_bar.h"

ABSL_FLAG(std::string, in, "", "input checkpoint directory (bf16/fp16/fp32)");
ABSL_FLAG(std::string, out, "", "output directory for the NVFP4 checkpoint");
ABSL_FLAG(int64_t, max_shard_mb, 4096, "largest safetensors shard in MiB");
ABSL_FLAG(int, threads, 0, "threads; 0 = all cores");

namespace rackserve::tools {
namespace {

constexpr char kTool[] = "rackserve-quantize";

int Main(int argc, char** argv) {
  ParseCommandLine(argc, argv, "rackserve-quantize --in DIR --out DIR");
  const std::string in = absl::GetFlag(FLAGS_in);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (in.empty() || out.empty()) Fail(kTool, "--in and --out are required");

  base::ThreadPool pool(absl::GetFlag(FLAGS_threads));
  ProgressBar bar("quantize", "tensors");
  model::QuantizeOptions options;
  options.max_shard_bytes = absl::GetFlag(FLAGS_max_shard_mb) << 20;
  options.pool = &pool;
  options.progress = [&bar](int64_t done, int64_t total) { bar.Update(done, total); };
  const auto start = std::chrono::steady_clock::now();
  auto report = model::QuantizeCheckpoint(in, out, options);
  bar.Finish();
  if (!report.ok()) Fail(kTool, report.status().ToString());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "%s: %s -> %s in %.1f s\n"
      "  quantized to NVFP4: %lld tensors; copied unchanged: %lld tensors\n"
      "  tensor bytes: %.1f MiB -> %.1f MiB (%.2fx smaller)\n"
      "  normalized error ||w - q(w)|| / ||w||: mean %.4f, max %.4f (%s)\n",
      kTool, in.c_str(), out.c_str(), seconds, static_cast<long long>(report->tensors_quantized),
      static_cast<long long>(report->tensors_copied), report->bytes_in / 1048576.0,
      report->bytes_out / 1048576.0,
      report->bytes_out > 0 ? static_cast<double>(report->bytes_in) / report->bytes_out : 0.0,
      report->mean_error, report->max_error, report->worst_tensor.c_str());
  return 0;
}

}  // namespace
}  // namespace rackserve::tools

int main(int argc, char** argv) { return rackserve::tools::Main(argc, argv); }
