// The CUDA NVFP4 expansion against the CPU dequantizer on fresh random matrices. Skips (visibly)
// on machines without a CUDA device.
#include "kernels/cuda/nvfp4_dequantize.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_status.h"
#include "runtime/numerics/fp4_matrix.h"
#include "runtime/numerics/minifloat.h"

namespace rackserve::kernels::cuda {
namespace {

template <typename T>
struct DeviceBuffer {
  explicit DeviceBuffer(size_t n) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&ptr), n * sizeof(T)), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  T* ptr = nullptr;
};

TEST(Nvfp4DequantizeTest, MatchesCpuDequantizer) {
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device on this machine";
  const uint64_t seed = std::random_device()();
  std::mt19937_64 rng(seed);
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 16}, {7, 48}, {129, 4096}}) {
    std::vector<float> values(rows * cols);
    for (float& v : values) v = normal(rng);
    auto m = numerics::QuantizeFp4(values, rows, cols, numerics::Fp4Format::kNvfp4);
    ASSERT_TRUE(m.ok()) << m.status();
    std::vector<float> want(rows * cols);
    numerics::DequantizeFp4(*m, want);

    DeviceBuffer<uint8_t> packed(m->packed.size()), scales(m->scales.size());
    DeviceBuffer<__nv_bfloat16> out(rows * cols);
    ASSERT_EQ(cudaMemcpy(packed.ptr, m->packed.data(), m->packed.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpy(scales.ptr, m->scales.data(), m->scales.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(cudaMemset(out.ptr, 0xFF, rows * cols * sizeof(__nv_bfloat16)), cudaSuccess);  // NaN
    const Nvfp4DequantizeParams params{packed.ptr, scales.ptr, m->tensor_scale,
                                       rows,       cols,       out.ptr};
    ASSERT_TRUE(LaunchNvfp4Dequantize(params, nullptr).ok());
    std::vector<uint16_t> got(rows * cols);
    ASSERT_EQ(cudaMemcpy(got.data(), out.ptr, got.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int64_t i = 0; i < rows * cols; ++i) {
      ASSERT_EQ(got[i], numerics::FloatToBf16(want[i])) << "element " << i;
    }
  }
}

TEST(Nvfp4DequantizeTest, RejectsBadShapes) {
  uint8_t byte = 0;
  __nv_bfloat16 out;
  Nvfp4DequantizeParams params{&byte, &byte, 1.0f, 1, 24, &out};
  EXPECT_EQ(LaunchNvfp4Dequantize(params, nullptr).code(), absl::StatusCode::kInvalidArgument);
  params.cols = 16;
  params.packed = nullptr;
  EXPECT_EQ(LaunchNvfp4Dequantize(params, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rackserve::kernels::cuda
