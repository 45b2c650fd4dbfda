// gpu_kernel_bench: the H200 ceilings and the NVFP4 small-batch GEMM measured in one run.
//
// Ceilings: device-to-device copy bandwidth (bytes read + written per second), cuBLASLt bf16 and
// fp8 (E4M3) GEMM rates at a large square size. Then the NVFP4 small-M GEMM
// (kernels/cuda/nvfp4_small_m_gemm.h) on the Llama 2 70B linear shapes at m = 1, 4, 8, 16: its
// time, the bytes it must move (packed weights + scales + x + y) per second, and that as a
// fraction of the copy bandwidth (issue 7's bar: >= 80%). Prints a short table last.
//
//   ./build/bench/gpu_kernel_bench [--iterations 50]
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "kernels/cuda/cublas_status.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/nvfp4_small_m_gemm.h"
#include "runtime/base/status_macros.h"

namespace rackserve::bench {
namespace {

using kernels::cuda::CudaDeviceAvailable;

// A device allocation freed on scope exit.
class DeviceMemory {
 public:
  static absl::StatusOr<DeviceMemory> Allocate(size_t bytes) {
    DeviceMemory memory;
    RS_CUDA_RETURN_IF_ERROR(cudaMalloc(&memory.ptr_, bytes));
    memory.bytes_ = bytes;
    return memory;
  }
  DeviceMemory() = default;
  DeviceMemory(DeviceMemory&& other) noexcept : ptr_(other.ptr_), bytes_(other.bytes_) {
    other.ptr_ = nullptr;
  }
  DeviceMemory& operator=(DeviceMemory&&) = delete;
  ~DeviceMemory() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Fills device memory with pseudo-random bytes (a host pattern copied in 64 MiB pieces).
absl::Status FillRandom(const DeviceMemory& memory, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> host(std::min<size_t>(memory.bytes(), 64 << 20) / 8 + 1);
  for (uint64_t& v : host) v = rng();
  for (size_t offset = 0; offset < memory.bytes(); offset += host.size() * 8) {
    const size_t n = std::min(host.size() * 8, memory.bytes() - offset);
    RS_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(memory.as<char>() + offset, host.data(), n, cudaMemcpyHostToDevice));
  }
  return absl::OkStatus();
}

// Average seconds of `run` over `iterations` launches on the default stream, after a warm-up.
template <typename Run>
absl::StatusOr<double> TimeIt(int iterations, Run run) {
  for (int i = 0; i < 3; ++i) RS_RETURN_IF_ERROR(run());
  cudaEvent_t start, stop;
  RS_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  RS_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  RS_CUDA_RETURN_IF_ERROR(cudaEventRecord(start));
  for (int i = 0; i < iterations; ++i) RS_RETURN_IF_ERROR(run());
  RS_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop));
  RS_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
  float ms = 0;
  RS_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / 1e3 / iterations;
}

// Bytes read + written per second by cudaMemcpy device to device of 2 GiB.
absl::StatusOr<double> CopyBandwidth(int iterations) {
  constexpr size_t kBytes = size_t{2} << 30;
  absl::StatusOr<DeviceMemory> src = DeviceMemory::Allocate(kBytes);
  if (!src.ok()) return src.status();
  absl::StatusOr<DeviceMemory> dst = DeviceMemory::Allocate(kBytes);
  if (!dst.ok()) return dst.status();
  absl::StatusOr<double> seconds = TimeIt(iterations, [&]() -> absl::Status {
    RS_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(dst->as<char>(), src->as<char>(), kBytes, cudaMemcpyDeviceToDevice));
    return absl::OkStatus();
  });
  if (!seconds.ok()) return seconds.status();
  return 2.0 * kBytes / *seconds;
}

// FLOP/s of a cuBLASLt GEMM D[m, n] (bf16) = A^T B with A, B of `type` (bf16 or fp8 E4M3),
// the "TN" layout fp8 requires.
absl::StatusOr<double> LtGemmRate(cudaDataType_t type, int64_t size, int iterations) {
  const size_t element = type == CUDA_R_16BF ? 2 : 1;
  const int64_t m = size, n = size, k = size;
  absl::StatusOr<DeviceMemory> a = DeviceMemory::Allocate(k * m * element);
  if (!a.ok()) return a.status();
  absl::StatusOr<DeviceMemory> b = DeviceMemory::Allocate(k * n * element);
  if (!b.ok()) return b.status();
  absl::StatusOr<DeviceMemory> d = DeviceMemory::Allocate(m * n * 2);
  if (!d.ok()) return d.status();
  constexpr size_t kWorkspace = 64 << 20;
  absl::StatusOr<DeviceMemory> workspace = DeviceMemory::Allocate(kWorkspace);
  if (!workspace.ok()) return workspace.status();
  // Small values keep fp8 and bf16 inputs finite: bytes 0x00-0x3F are small positives in both.
  RS_CUDA_RETURN_IF_ERROR(cudaMemset(a->as<char>(), 0x30, a->bytes()));
  RS_CUDA_RETURN_IF_ERROR(cudaMemset(b->as<char>(), 0x30, b->bytes()));

  cublasLtHandle_t handle;
  RS_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&handle));
  std::unique_ptr<cublasLtContext, decltype(&cublasLtDestroy)> handle_owner(handle,
                                                                            &cublasLtDestroy);
  cublasLtMatmulDesc_t op;
  RS_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  std::unique_ptr<cublasLtMatmulDescOpaque_t, decltype(&cublasLtMatmulDescDestroy)> op_owner(
      op, &cublasLtMatmulDescDestroy);
  const cublasOperation_t transpose = CUBLAS_OP_T, no_transpose = CUBLAS_OP_N;
  RS_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA,
                                                           &transpose, sizeof(transpose)));
  RS_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB,
                                                           &no_transpose, sizeof(no_transpose)));
  cublasLtMatrixLayout_t a_layout, b_layout, d_layout;
  RS_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&a_layout, type, k, m, k));
  RS_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&b_layout, type, k, n, k));
  RS_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&d_layout, CUDA_R_16BF, m, n, m));
  using LayoutOwner =
      std::unique_ptr<cublasLtMatrixLayoutOpaque_t, decltype(&cublasLtMatrixLayoutDestroy)>;
  const LayoutOwner a_owner(a_layout, &cublasLtMatrixLayoutDestroy),
      b_owner(b_layout, &cublasLtMatrixLayoutDestroy),
      d_owner(d_layout, &cublasLtMatrixLayoutDestroy);
  cublasLtMatmulPreference_t preference;
  RS_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&preference));
  std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, decltype(&cublasLtMatmulPreferenceDestroy)>
      preference_owner(preference, &cublasLtMatmulPreferenceDestroy);
  RS_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
      preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &kWorkspace, sizeof(kWorkspace)));
  cublasLtMatmulHeuristicResult_t heuristic;
  int found = 0;
  RS_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulAlgoGetHeuristic(handle, op, a_layout, b_layout,
                                                           d_layout, d_layout, preference, 1,
                                                           &heuristic, &found));
  if (found == 0) {
    return absl::UnimplementedError(
        absl::StrFormat("cuBLASLt has no algorithm for a %d^3 GEMM of this type", size));
  }
  const float alpha = 1.0f, beta = 0.0f;
  absl::StatusOr<double> seconds = TimeIt(iterations, [&]() -> absl::Status {
    RS_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(
        handle, op, &alpha, a->as<void>(), a_layout, b->as<void>(), b_layout, &beta, d->as<void>(),
        d_layout, d->as<void>(), d_layout, &heuristic.algo, workspace->as<void>(), kWorkspace,
        nullptr));
    return absl::OkStatus();
  });
  if (!seconds.ok()) return seconds.status();
  return 2.0 * m * n * k / *seconds;
}

struct LayerShape {
  const char* name;
  int64_t n, k;
};

// Llama 2 70B's linear layers at TP 1: fused QKV (64 + 2 * 8 heads of 128), the attention output,
// fused gate/up (2 x 28672), down.
constexpr LayerShape kLlama70bLayers[] = {
    {"qkv", 10240, 8192}, {"o", 8192, 8192}, {"gate_up", 57344, 8192}, {"down", 8192, 28672}};

struct GemmResult {
  std::string layer;
  int64_t m = 0;
  double seconds = 0;
  double bytes_per_second = 0;
};

absl::StatusOr<GemmResult> SmallMGemm(const LayerShape& shape, int64_t m, int iterations) {
  absl::StatusOr<DeviceMemory> packed = DeviceMemory::Allocate(shape.n * shape.k / 2);
  if (!packed.ok()) return packed.status();
  absl::StatusOr<DeviceMemory> scales = DeviceMemory::Allocate(shape.n * shape.k / 16);
  if (!scales.ok()) return scales.status();
  absl::StatusOr<DeviceMemory> x = DeviceMemory::Allocate(m * shape.k * 2);
  if (!x.ok()) return x.status();
  absl::StatusOr<DeviceMemory> y = DeviceMemory::Allocate(m * shape.n * 4);
  if (!y.ok()) return y.status();
  RS_RETURN_IF_ERROR(FillRandom(*packed, 1));
  // E4M3 0x38 = 1.0 and bf16 0x3F80 = 1.0: finite values, as a real layer's.
  RS_CUDA_RETURN_IF_ERROR(cudaMemset(scales->as<char>(), 0x38, scales->bytes()));
  std::vector<uint16_t> ones(m * shape.k, 0x3F80);
  RS_CUDA_RETURN_IF_ERROR(cudaMemcpy(x->as<char>(), ones.data(), x->bytes(), cudaMemcpyHostToDevice));
  kernels::cuda::Nvfp4SmallMGemmParams params;
  params.x = x->as<__nv_bfloat16>();
  params.m = m;
  params.packed = packed->as<uint8_t>();
  params.scales = scales->as<uint8_t>();
  params.n = shape.n;
  params.k = shape.k;
  params.y = y->as<float>();
  absl::StatusOr<double> seconds = TimeIt(
      iterations, [&]() { return kernels::cuda::LaunchNvfp4SmallMGemm(params, nullptr); });
  if (!seconds.ok()) return seconds.status();
  const double bytes = packed->bytes() + scales->bytes() + x->bytes() + y->bytes();
  return GemmResult{shape.name, m, *seconds, bytes / *seconds};
}

int Main(int argc, char** argv) {
  int iterations = 50;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
      iterations = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: gpu_kernel_bench [--iterations N]\n");
      return 2;
    }
  }
  if (iterations < 1) {
    std::fprintf(stderr, "gpu_kernel_bench: --iterations must be >= 1\n");
    return 2;
  }
  if (!CudaDeviceAvailable()) {
    std::fprintf(stderr, "gpu_kernel_bench: no CUDA device on this machine\n");
    return 1;
  }
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
    std::printf("device: %s, %d SMs, %.1f GiB\n", prop.name, prop.multiProcessorCount,
                prop.totalGlobalMem / double(1 << 30));
  }
  auto fail = [](const char* what, const absl::Status& status) {
    std::fprintf(stderr, "gpu_kernel_bench: %s: %s\n", what, status.ToString().c_str());
    return 1;
  };
  absl::StatusOr<double> copy = CopyBandwidth(iterations);
  if (!copy.ok()) return fail("copy bandwidth", copy.status());
  absl::StatusOr<double> bf16 = LtGemmRate(CUDA_R_16BF, 8192, iterations);
  if (!bf16.ok()) return fail("cuBLASLt bf16 GEMM", bf16.status());
  absl::StatusOr<double> fp8 = LtGemmRate(CUDA_R_8F_E4M3, 8192, iterations);
  if (!fp8.ok()) return fail("cuBLASLt fp8 GEMM", fp8.status());
  std::vector<GemmResult> results;
  for (const LayerShape& shape : kLlama70bLayers) {
    for (int64_t m : {1, 4, 8, 16}) {
      absl::StatusOr<GemmResult> r = SmallMGemm(shape, m, iterations);
      if (!r.ok()) return fail(shape.name, r.status());
      results.push_back(*r);
    }
  }
  std::printf("\n== ceilings\n");
  std::printf("copy (read + write)   %8.0f GB/s\n", *copy / 1e9);
  std::printf("cuBLASLt bf16 8192^3  %8.1f TFLOP/s\n", *bf16 / 1e12);
  std::printf("cuBLASLt fp8  8192^3  %8.1f TFLOP/s\n", *fp8 / 1e12);
  std::printf("\n== NVFP4 small-m GEMM, Llama 2 70B layers (bar: >= 80%% of copy bandwidth)\n");
  std::printf("%-8s %4s %10s %10s %8s\n", "layer", "m", "us", "GB/s", "of copy");
  for (const GemmResult& r : results) {
    std::printf("%-8s %4lld %10.1f %10.0f %7.1f%%\n", r.layer.c_str(),
                static_cast<long long>(r.m), r.seconds * 1e6, r.bytes_per_second / 1e9,
                100.0 * r.bytes_per_second / *copy);
  }
  return 0;
}

}  // namespace
}  // namespace rackserve::bench

int main(int argc, char** argv) { return rackserve::bench::Main(argc, argv); }
