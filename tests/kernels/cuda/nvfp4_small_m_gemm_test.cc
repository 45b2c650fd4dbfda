// The small-batch NVFP4 GEMM against a float64 reference on fresh random inputs (normalized
// error), for every m in [1, 16] and shapes with partial row groups. Skips (visibly) on machines
// without a CUDA device; the argument checks run everywhere.
#include "kernels/cuda/nvfp4_small_m_gemm.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_status.h"
#include "runtime/numerics/fp4_matrix.h"
#include "runtime/numerics/minifloat.h"

namespace rackserve::kernels::cuda {
namespace {

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&ptr_), n * sizeof(T)), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
};

TEST(Nvfp4SmallMGemmTest, MatchesFloat64Reference) {
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device on this machine";
  const uint64_t seed = std::random_device()();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  struct Shape {
    int64_t n, k;
  };
  for (const Shape shape : {Shape{8, 128}, Shape{40, 256}, Shape{1024, 1024}, Shape{264, 4096}}) {
    std::vector<float> weights(shape.n * shape.k);
    for (float& w : weights) w = normal(rng);
    auto w = numerics::QuantizeFp4(weights, shape.n, shape.k, numerics::Fp4Format::kNvfp4);
    ASSERT_TRUE(w.ok()) << w.status();
    std::vector<float> dequantized(shape.n * shape.k);
    numerics::DequantizeFp4(*w, dequantized);
    DeviceBuffer<uint8_t> packed(w->packed.size()), scales(w->scales.size());
    ASSERT_EQ(cudaMemcpy(packed.get(), w->packed.data(), w->packed.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpy(scales.get(), w->scales.data(), w->scales.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    for (int64_t m = 1; m <= 16; ++m) {
      SCOPED_TRACE(::testing::Message() << "m " << m << " n " << shape.n << " k " << shape.k);
      std::vector<uint16_t> x_bits(m * shape.k);
      std::vector<double> x(m * shape.k);
      for (int64_t i = 0; i < m * shape.k; ++i) {
        x_bits[i] = numerics::FloatToBf16(normal(rng));
        x[i] = numerics::Bf16ToFloat(x_bits[i]);
      }
      DeviceBuffer<__nv_bfloat16> x_device(x_bits.size());
      DeviceBuffer<float> y_device(m * shape.n);
      ASSERT_EQ(cudaMemcpy(x_device.get(), x_bits.data(), x_bits.size() * 2, cudaMemcpyHostToDevice),
                cudaSuccess);
      Nvfp4SmallMGemmParams params;
      params.x = x_device.get();
      params.m = m;
      params.packed = packed.get();
      params.scales = scales.get();
      params.tensor_scale = w->tensor_scale;
      params.n = shape.n;
      params.k = shape.k;
      params.y = y_device.get();
      ASSERT_TRUE(LaunchNvfp4SmallMGemm(params, nullptr).ok());
      std::vector<float> y(m * shape.n);
      ASSERT_EQ(cudaMemcpy(y.data(), y_device.get(), y.size() * 4, cudaMemcpyDeviceToHost),
                cudaSuccess);
      double error = 0, norm = 0;
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t r = 0; r < shape.n; ++r) {
          double want = 0;
          for (int64_t c = 0; c < shape.k; ++c) {
            want += x[i * shape.k + c] * dequantized[r * shape.k + c];
          }
          error += (y[i * shape.n + r] - want) * (y[i * shape.n + r] - want);
          norm += want * want;
        }
      }
      EXPECT_LT(std::sqrt(error / norm), 1e-5);
    }
  }
}

TEST(Nvfp4SmallMGemmTest, RejectsBadArguments) {
  uint8_t byte = 0;
  float y = 0;
  __nv_bfloat16 x;
  Nvfp4SmallMGemmParams params;
  params.x = &x;
  params.packed = &byte;
  params.scales = &byte;
  params.y = &y;
  params.m = 1;
  params.n = 8;
  params.k = 128;
  const auto code_with = [&](auto edit) {
    Nvfp4SmallMGemmParams p = params;
    edit(p);
    const absl::Status s = LaunchNvfp4SmallMGemm(p, nullptr);
    return std::make_pair(s.code(), std::string(s.message()));
  };
  auto [code, message] = code_with([](Nvfp4SmallMGemmParams& p) { p.m = 17; });
  EXPECT_EQ(code, absl::StatusCode::kInvalidArgument);
  EXPECT_NE(message.find("m = 17"), std::string::npos) << message;
  std::tie(code, message) = code_with([](Nvfp4SmallMGemmParams& p) { p.n = 12; });
  EXPECT_EQ(code, absl::StatusCode::kInvalidArgument);
  EXPECT_NE(message.find("n = 12"), std::string::npos) << message;
  std::tie(code, message) = code_with([](Nvfp4SmallMGemmParams& p) { p.k = 96; });
  EXPECT_EQ(code, absl::StatusCode::kInvalidArgument);
  EXPECT_NE(message.find("k = 96"), std::string::npos) << message;
  std::tie(code, message) = code_with([](Nvfp4SmallMGemmParams& p) { p.scales = nullptr; });
  EXPECT_EQ(code, absl::StatusCode::kInvalidArgument);
  EXPECT_NE(message.find("scales"), std::string::npos) << message;
}

}  // namespace
}  // namespace rackserve::kernels::cuda
