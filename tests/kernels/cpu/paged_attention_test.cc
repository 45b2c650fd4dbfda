#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/write_kv.h"
#include "runtime/base/thread_pool.h"
#include "tests/kernels/cpu/reference_check.h"

namespace rackserve::kernels::cpu {
namespace {

using reference_check::NormalizedError;
using reference_check::Poisoned;
using reference_check::SeededRng;
using ::testing::HasSubstr;

struct Chunk {
  int64_t context_len;
  int64_t queries;
};

// A decode, a 13-token continuation with context 40, a fresh prefill, a decode whose context
// spans several 64-position tiles, a context of exactly one tile, and a chunk with no queries.
const std::vector<Chunk> kMixedChunks = {{23, 1}, {40, 13}, {9, 9}, {150, 2}, {64, 1}, {5, 0}};

// One PagedAttention call with all its storage: a paged cache whose blocks are handed out in
// shuffled order (so no sequence is contiguous), pre-filled with NaN so that reading a slot no
// sequence owns poisons the output, the dense keys and values of every sequence for the
// reference, and the queries.
struct Batch {
  int block_size;
  int64_t kv_heads, group, head_dim;
  std::vector<Chunk> chunks;
  std::vector<float> k_cache, v_cache;
  std::vector<std::vector<float>> keys, values;  // per chunk [context_len, kv_heads, head_dim]
  std::vector<std::vector<int32_t>> tables;
  std::vector<const int32_t*> table_ptrs;
  std::vector<int64_t> query_begin, context_len;
  std::vector<float> q;  // [total_tokens, num_heads, head_dim]
  int64_t num_blocks = 0;

  int64_t num_heads() const { return kv_heads * group; }
  int64_t total_tokens() const { return query_begin.back(); }
  int64_t out_floats() const { return total_tokens() * num_heads() * head_dim; }
  PagedKvLayer cache() {
    return {k_cache.data(), v_cache.data(), num_blocks, block_size, kv_heads, head_dim};
  }
  PagedAttentionParams Params(float* out) {
    return {q.data(),
            out,
            num_heads(),
            static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim))),
            cache(),
            static_cast<int64_t>(chunks.size()),
            query_begin.data(),
            context_len.data(),
            table_ptrs.data()};
  }
};

Batch MakeBatch(std::mt19937_64& rng, int block_size, int64_t kv_heads, int64_t group,
                int64_t head_dim, const std::vector<Chunk>& chunks,
                const std::function<float()>& draw) {
  Batch b{block_size, kv_heads, group, head_dim, chunks};
  int64_t needed = 0;
  for (const Chunk& c : chunks) needed += (c.context_len + block_size - 1) / block_size;
  b.num_blocks = needed + 5;
  std::vector<int32_t> ids(b.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  const int64_t slot_floats = kv_heads * head_dim;
  b.k_cache = Poisoned(b.num_blocks * block_size * slot_floats);
  b.v_cache = Poisoned(b.num_blocks * block_size * slot_floats);
  b.query_begin = {0};
  size_t next_id = 0;
  for (const Chunk& c : chunks) {
    const int64_t blocks = (c.context_len + block_size - 1) / block_size;
    b.tables.emplace_back(ids.begin() + next_id, ids.begin() + next_id + blocks);
    next_id += blocks;
    std::vector<float> keys(c.context_len * slot_floats), values(c.context_len * slot_floats);
    for (float& x : keys) x = draw();
    for (float& x : values) x = draw();
    std::vector<int64_t> slots(c.context_len);
    for (int64_t p = 0; p < c.context_len; ++p) {
      slots[p] =
          static_cast<int64_t>(b.tables.back()[p / block_size]) * block_size + p % block_size;
    }
    EXPECT_TRUE(WriteKv(b.cache(), keys.data(), values.data(), slots.data(), c.context_len).ok());
    b.keys.push_back(std::move(keys));
    b.values.push_back(std::move(values));
    b.query_begin.push_back(b.query_begin.back() + c.queries);
    b.context_len.push_back(c.context_len);
  }
  for (const auto& t : b.tables) b.table_ptrs.push_back(t.data());
  b.q.resize(b.out_floats());
  for (float& x : b.q) x = draw();
  return b;
}

Batch MakeBatch(std::mt19937_64& rng, int block_size, int64_t kv_heads, int64_t group,
                int64_t head_dim, const std::vector<Chunk>& chunks) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  return MakeBatch(rng, block_size, kv_heads, group, head_dim, chunks, [&] { return normal(rng); });
}

// Dense causal attention in double over the sequences' own keys and values.
std::vector<double> ReferenceAttention(const Batch& b, float scale) {
  std::vector<double> out(b.out_floats());
  const int64_t heads = b.num_heads();
  const int64_t d = b.head_dim;
  for (size_t c = 0; c < b.chunks.size(); ++c) {
    for (int64_t row = b.query_begin[c]; row < b.query_begin[c + 1]; ++row) {
      const int64_t position =
          b.chunks[c].context_len - b.chunks[c].queries + (row - b.query_begin[c]);
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t g = h / b.group;
        const float* q = b.q.data() + (row * heads + h) * d;
        std::vector<double> scores(position + 1);
        for (int64_t p = 0; p <= position; ++p) {
          const float* k = b.keys[c].data() + (p * b.kv_heads + g) * d;
          double dot = 0.0;
          for (int64_t i = 0; i < d; ++i) dot += static_cast<double>(q[i]) * k[i];
          scores[p] = dot * scale;
        }
        const double max = *std::max_element(scores.begin(), scores.end());
        double sum = 0.0;
        for (double& s : scores) sum += (s = std::exp(s - max));
        for (int64_t i = 0; i < d; ++i) {
          double acc = 0.0;
          for (int64_t p = 0; p <= position; ++p) {
            acc += scores[p] * b.values[c][(p * b.kv_heads + g) * d + i];
          }
          out[(row * heads + h) * d + i] = acc / sum;
        }
      }
    }
  }
  return out;
}

class PagedAttentionShapeTest : public ::testing::TestWithParam<std::tuple<int, int64_t, int64_t>> {
};

TEST_P(PagedAttentionShapeTest, MixedChunksMatchDenseDoubleAttention) {
  const auto [block_size, group, head_dim] = GetParam();
  auto rng = SeededRng();
  Batch b = MakeBatch(rng, block_size, /*kv_heads=*/2, group, head_dim, kMixedChunks);
  std::vector<float> out = Poisoned(b.out_floats());
  const PagedAttentionParams params = b.Params(out.data());
  ASSERT_TRUE(PagedAttention(params, nullptr).ok());
  EXPECT_LT(NormalizedError(out, ReferenceAttention(b, params.scale)), 1e-5);

  base::ThreadPool pool(3);
  std::vector<float> out_pool = Poisoned(b.out_floats());
  ASSERT_TRUE(PagedAttention(b.Params(out_pool.data()), &pool).ok());
  EXPECT_EQ(std::memcmp(out.data(), out_pool.data(), out.size() * sizeof(float)), 0)
      << "the pool changed the result";
}

INSTANTIATE_TEST_SUITE_P(BlockSizesGqaHeadDims, PagedAttentionShapeTest,
                         ::testing::Combine(::testing::Values(1, 4, 16),
                                            ::testing::Values(int64_t{1}, int64_t{2}, int64_t{4},
                                                              int64_t{8}),
                                            ::testing::Values(int64_t{64}, int64_t{128})),
                         [](const auto& info) {
                           return absl::StrCat("block", std::get<0>(info.param), "_gqa",
                                               std::get<1>(info.param), "_d",
                                               std::get<2>(info.param));
                         });

TEST(PagedAttentionTest, OneHeadAndAnOddHeadDim) {
  auto rng = SeededRng();
  for (int64_t head_dim : {1, 6, 13}) {
    Batch b = MakeBatch(rng, 4, /*kv_heads=*/1, /*group=*/1, head_dim, kMixedChunks);
    std::vector<float> out = Poisoned(b.out_floats());
    const PagedAttentionParams params = b.Params(out.data());
    ASSERT_TRUE(PagedAttention(params, nullptr).ok());
    EXPECT_LT(NormalizedError(out, ReferenceAttention(b, params.scale)), 1e-5)
        << "head_dim " << head_dim;
  }
}

// Integer queries and keys with scale 1 make exact scores in the hundreds: exp() of them
// overflows float, so only a max-subtracting softmax gets this right.
TEST(PagedAttentionTest, HugeScoresStayStable) {
  auto rng = SeededRng();
  std::uniform_int_distribution<int> small(-4, 4);
  Batch b =
      MakeBatch(rng, 4, 2, 2, 64, kMixedChunks, [&] { return static_cast<float>(small(rng)); });
  std::vector<float> out = Poisoned(b.out_floats());
  PagedAttentionParams params = b.Params(out.data());
  params.scale = 1.0f;
  ASSERT_TRUE(PagedAttention(params, nullptr).ok());
  EXPECT_LT(NormalizedError(out, ReferenceAttention(b, 1.0f)), 1e-5);
}

TEST(PagedAttentionTest, EmptyBatchIsANoOp) {
  auto rng = SeededRng();
  Batch b = MakeBatch(rng, 4, 2, 2, 8, {});
  EXPECT_TRUE(PagedAttention(b.Params(nullptr), nullptr).ok());
}

TEST(PagedAttentionTest, RejectsBadArguments) {
  auto rng = SeededRng();
  Batch b = MakeBatch(rng, 4, 2, 2, 8, {{7, 2}, {40, 13}});
  std::vector<float> out = Poisoned(b.out_floats());
  const PagedAttentionParams good = b.Params(out.data());
  ASSERT_TRUE(PagedAttention(good, nullptr).ok());

  const std::vector<int64_t> begin_not_zero = {1, 3, 15};
  const std::vector<int64_t> begin_decreasing = {0, 5, 4};
  const std::vector<int64_t> short_context = {7, 12};
  const std::vector<int32_t> bad_table = {
      b.tables[1][0], b.tables[1][1], static_cast<int32_t>(b.num_blocks), 0, 0, 0, 0, 0, 0, 0};
  const std::vector<int32_t> negative_table = {-3, 0};
  const int32_t* with_bad_table[2] = {b.table_ptrs[0], bad_table.data()};
  const int32_t* with_negative_table[2] = {negative_table.data(), b.table_ptrs[1]};
  const int32_t* with_null_table[2] = {nullptr, b.table_ptrs[1]};
  const std::string out_of_range =
      absl::StrCat("chunk 1 block_tables[1][2] = ", b.num_blocks,
                   " is outside the cache's blocks [0, ", b.num_blocks, ")");
  auto with = [&](auto edit) {
    PagedAttentionParams p = good;
    edit(p);
    return PagedAttention(p, nullptr);
  };
  struct Case {
    absl::Status status;
    std::string culprit;
  };
  const Case cases[] = {
      {with([](auto& p) { p.cache.block_size = 0; }), "cache.block_size must be > 0, got 0"},
      {with([](auto& p) { p.cache.k = nullptr; }), "argument cache.k is null"},
      {with([](auto& p) { p.num_heads = 0; }), "argument num_heads must be > 0, got 0"},
      {with([](auto& p) { p.num_heads = 3; }),
       "num_heads 3 is not a multiple of cache.num_kv_heads 2"},
      {with([](auto& p) { p.scale = std::numeric_limits<float>::infinity(); }),
       "scale must be finite, got inf"},
      {with([](auto& p) { p.num_chunks = -1; }), "argument num_chunks must be >= 0, got -1"},
      {with([](auto& p) { p.query_begin = nullptr; }), "argument query_begin is null"},
      {with([&](auto& p) { p.query_begin = begin_not_zero.data(); }),
       "query_begin[0] must be 0, got 1"},
      {with([&](auto& p) { p.query_begin = begin_decreasing.data(); }),
       "query_begin decreases at chunk 1: query_begin[1] = 5 > query_begin[2] = 4"},
      {with([](auto& p) { p.context_len = nullptr; }), "argument context_len is null"},
      {with([](auto& p) { p.block_tables = nullptr; }), "argument block_tables is null"},
      {with([&](auto& p) { p.context_len = short_context.data(); }),
       "chunk 1 has context_len 12, fewer than its 13 queries"},
      {with([&](auto& p) { p.block_tables = with_null_table; }), "block_tables[0] is null"},
      {with([&](auto& p) { p.block_tables = with_bad_table; }), out_of_range},
      {with([&](auto& p) { p.block_tables = with_negative_table; }),
       "chunk 0 block_tables[0][0] = -3 is outside"},
      {with([](auto& p) { p.q = nullptr; }), "argument q is null"},
      {with([](auto& p) { p.out = nullptr; }), "argument out is null"},
      {with([](auto& p) { p.out = const_cast<float*>(p.q) + 5; }),
       "argument out overlaps argument q"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.culprit;
    EXPECT_THAT(c.status.message(), HasSubstr(c.culprit));
    EXPECT_THAT(c.status.message(), HasSubstr("PagedAttention: "));
  }
}

}  // namespace
}  // namespace rackserve::kernels::cpu
