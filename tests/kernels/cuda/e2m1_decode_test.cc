// The NVFP4 kernels' E2M1 decode (kernels/cuda/e2m1_decode.h) on the host: every 16-bit group
// of four codes decodes to the bf16 bits of the E2M1 values, in the order the kernels assume.
#include "kernels/cuda/e2m1_decode.h"

#include <cstdint>

#include "gtest/gtest.h"
#include "runtime/numerics/minifloat.h"

namespace rackserve::kernels::cuda {
namespace {

uint16_t Bf16BitsOfCode(uint32_t code) {
  return numerics::FloatToBf16(numerics::E2m1ToFloat(static_cast<uint8_t>(code)));
}

TEST(E2m1DecodeTest, EveryQuadDecodesToBf16Values) {
  for (uint32_t codes = 0; codes < 0x10000; ++codes) {
    uint32_t pair01 = 0, pair23 = 0;
    DecodeE2m1Quad(codes, &pair01, &pair23);
    const uint32_t want01 = Bf16BitsOfCode(codes & 0xF) | (Bf16BitsOfCode((codes >> 4) & 0xF) << 16);
    const uint32_t want23 =
        Bf16BitsOfCode((codes >> 8) & 0xF) | (Bf16BitsOfCode((codes >> 12) & 0xF) << 16);
    ASSERT_EQ(pair01, want01) << "codes 0x" << std::hex << codes;
    ASSERT_EQ(pair23, want23) << "codes 0x" << std::hex << codes;
  }
}

TEST(E2m1DecodeTest, BytePermuteReplicatesSignWhenAsked) {
  EXPECT_EQ(BytePermute(0x44332211u, 0x88776655u, 0x3210u), 0x44332211u);
  EXPECT_EQ(BytePermute(0x44332211u, 0x88776655u, 0x7654u), 0x88776655u);
  EXPECT_EQ(BytePermute(0x00000080u, 0u, 0x4448u), 0x000000FFu);  // bytes 1-3: b's zero byte
}

}  // namespace
}  // namespace rackserve::kernels::cuda
