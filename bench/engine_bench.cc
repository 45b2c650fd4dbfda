// engine_bench: throughput of the CPU engine on generated models — prefill tokens/s and decode
// tokens/s at several batch sizes — against the machine's measured memory bandwidth, the ceiling
// of FP4 decode at small batch (every step streams all weights once).
//
//   engine_bench [--presets small,100m] [--work_dir DIR] [--threads N]
// Prints one table; figures go to bench/RESULTS.md by hand with the command and machine.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "runtime/engine/engine.h"
#include "runtime/model/model_generator.h"
#include "runtime/tools/command_line.h"

ABSL_FLAG(std::vector<std::string>, presets, std::vector<std::string>({"small", "100m"}),
          "generated model presets to measure");
ABSL_FLAG(std::string, work_dir, "/tmp/rackserve-bench", "where generated models are cached");
ABSL_FLAG(int, threads, 0, "CPU threads; 0 = all cores");
ABSL_FLAG(std::vector<std::string>, batches, std::vector<std::string>({"1", "8", "64"}),
          "decode batch sizes");
ABSL_FLAG(int64_t, prefill_len, 256, "prompt length of the prefill measurement");
ABSL_FLAG(int64_t, decode_steps, 24, "decode steps measured per batch size");

namespace rackserve::bench {
namespace {

constexpr char kTool[] = "engine_bench";
using Clock = std::chrono::steady_clock;

template <typename T>
T OrFail(absl::StatusOr<T> v) {
  if (!v.ok()) tools::Fail(kTool, v.status().ToString());
  return *std::move(v);
}

// Read bandwidth of this machine in bytes/s: summing a buffer far larger than the caches.
double MeasureReadBandwidth(int threads) {
  const size_t n = size_t{256} << 20 >> 3;  // 256 MiB of doubles
  std::vector<double> buf(n, 1.0);
  base::ThreadPool pool(threads);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    std::vector<double> partial(64, 0.0);
    const auto t0 = Clock::now();
    pool.ParallelFor(64, 1, [&](int64_t b, int64_t e) {
      for (int64_t part = b; part < e; ++part) {
        double s = 0;
        const size_t lo = n * part / 64, hi = n * (part + 1) / 64;
        for (size_t i = lo; i < hi; ++i) s += buf[i];
        partial[part] = s;
      }
    });
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    double total = 0;
    for (double p : partial) total += p;
    if (total != static_cast<double>(n)) tools::Fail(kTool, "bandwidth probe miscounted");
    best = std::max(best, n * sizeof(double) / sec);
  }
  return best;
}

// Peak fp32 multiply-add rate of one core, in FLOP/s: twelve independent chains of vector
// multiply-adds (8-wide AVX2 + FMA where the CPU has them, else 4-wide SSE), the compute roofline
// of the CPU ops.
using Float4 = float __attribute__((vector_size(16)));
using Float8 = float __attribute__((vector_size(32)));
constexpr int kChains = 12;

template <typename Vec>
[[gnu::always_inline]] inline float MultiplyAddChains(int64_t iterations) {
  constexpr int kLanes = sizeof(Vec) / sizeof(float);
  Vec acc[kChains];
#pragma GCC unroll 16
  for (int c = 0; c < kChains; ++c) acc[c] = Vec{} + 1.0f + 0.001f * c;
  const Vec mul = Vec{} + 0.9999999f;
  const Vec add = Vec{} + 1e-7f;
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
    for (int c = 0; c < kChains; ++c) {
      acc[c] = acc[c] * mul + add;
      asm volatile("" : "+x"(acc[c]));  // keeps every chain in a register and in the loop
    }
  }
  float sum = 0;
  for (int c = 0; c < kChains; ++c) {
    for (int lane = 0; lane < kLanes; ++lane) sum += acc[c][lane];
  }
  return sum;
}

[[gnu::target("avx2,fma")]] float MultiplyAddChainsAvx2(int64_t iterations) {
  return MultiplyAddChains<Float8>(iterations);
}
float MultiplyAddChainsSse(int64_t iterations) { return MultiplyAddChains<Float4>(iterations); }

double MeasurePeakFlopsPerCore() {
  constexpr int64_t kIterations = 20'000'000;
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const int lanes = avx2 ? 8 : 4;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    const float sum = avx2 ? MultiplyAddChainsAvx2(kIterations) : MultiplyAddChainsSse(kIterations);
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!(sum > 0)) tools::Fail(kTool, "peak probe produced no result");
    best = std::max(best, 2.0 * kChains * lanes * kIterations / sec);
  }
  return best;
}

struct ModelFacts {
  int64_t params = 0;         // all parameters
  int64_t linear_params = 0;  // decoder linear weights: one multiply-add each per token
  int64_t head_params = 0;    // LM head weights: one multiply-add each per sampled token
  int64_t step_bytes = 0;     // bytes of weights one decode step reads (FP4 linears + LM head)
};

ModelFacts Facts(const model::ModelConfig& c) {
  const int64_t layer = c.hidden_size * (c.q_size() + 2 * c.kv_size()) +
                        c.q_size() * c.hidden_size + 3 * c.hidden_size * c.intermediate_size;
  const int64_t head = c.vocab_size * c.hidden_size;
  ModelFacts f;
  f.params = c.num_hidden_layers * layer + head * (c.tie_word_embeddings ? 1 : 2);
  f.linear_params = c.num_hidden_layers * layer;
  f.head_params = head;
  // NVFP4: 0.5 byte per weight + 1 byte per 16 weights; LM head float32.
  f.step_bytes = c.num_hidden_layers * layer * 9 / 16 + head * 4;
  return f;
}

std::string EnsureModel(const std::string& preset) {
  const std::string dir = absl::GetFlag(FLAGS_work_dir) + "/" + preset + "-nvfp4";
  if (std::filesystem::exists(dir + "/config.json")) return dir;
  base::ThreadPool pool;
  model::RandomModelOptions options;
  options.config = OrFail(model::PresetModelConfig(preset));
  options.with_tokenizer = false;
  options.pool = &pool;
  if (absl::Status s = model::WriteRandomModel(dir, options); !s.ok()) {
    tools::Fail(kTool, s.ToString());
  }
  return dir;
}

std::vector<int32_t> Prompt(std::mt19937_64& rng, int64_t len, int64_t vocab) {
  std::uniform_int_distribution<int32_t> d(3, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> p(len);
  for (auto& t : p) t = d(rng);
  return p;
}

engine::Request BenchRequest(engine::RequestId id, std::vector<int32_t> prompt, int64_t max_new) {
  engine::Request r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.sampling.max_new_tokens = max_new;
  r.sampling.ignore_eos = true;
  return r;
}

// Submits `count` requests of `prompt_len` random tokens generating `max_new` each, then steps
// until all are done; returns the tokens and seconds of the steps `counts` selects.
template <typename CountFn>
std::pair<int64_t, double> RunRequests(engine::Engine& engine, std::mt19937_64& rng, int64_t count,
                                       int64_t prompt_len, int64_t max_new, CountFn counts) {
  for (int64_t i = 0; i < count; ++i) {
    const engine::Request r =
        BenchRequest(i, Prompt(rng, prompt_len, engine.config().vocab_size), max_new);
    if (absl::Status s = engine.Submit(r); !s.ok()) tools::Fail(kTool, s.ToString());
  }
  int64_t tokens = 0;
  double seconds = 0;
  while (engine.has_work()) {
    engine::StepStats stats;
    OrFail(engine.Step(&stats));
    if (const int64_t n = counts(stats); n > 0) {
      tokens += n;
      seconds += stats.seconds;
    }
  }
  return {tokens, seconds};
}

// Prompt tokens per second over 4 prompts of prefill_len, one token generated each.
double MeasurePrefill(engine::Engine& engine, std::mt19937_64& rng) {
  const auto [tokens, seconds] =
      RunRequests(engine, rng, 4, absl::GetFlag(FLAGS_prefill_len), 1,
                  [](const engine::StepStats& s) { return s.prefill_tokens; });
  return seconds > 0 ? tokens / seconds : 0.0;
}

// Generated tokens per second in pure decode steps with `batch` sequences running.
double MeasureDecode(engine::Engine& engine, std::mt19937_64& rng, int64_t batch) {
  const auto [tokens, seconds] = RunRequests(
      engine, rng, batch, 16, absl::GetFlag(FLAGS_decode_steps) + 1,
      [batch](const engine::StepStats& s) {
        return s.prefill_tokens == 0 && s.decode_tokens == batch ? s.decode_tokens : int64_t{0};
      });
  return seconds > 0 ? tokens / seconds : 0.0;
}

int Main(int argc, char** argv) {
  tools::ParseCommandLine(argc, argv, "engine_bench [--presets small,100m] [--threads N]");
  const int threads = absl::GetFlag(FLAGS_threads);
  const double bandwidth = MeasureReadBandwidth(threads);
  const int cores = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  const double peak_flops = MeasurePeakFlopsPerCore() * cores;
  std::printf(
      "machine: %d threads used, read bandwidth %.1f GB/s, peak fp32 multiply-add "
      "%.1f GFLOP/s (%d x one core; both measured now)\n",
      cores, bandwidth / 1e9, peak_flops / 1e9, cores);
  std::printf("%-6s %8s %8s %6s %10s %9s %8s %12s %8s\n", "model", "params", "phase", "batch",
              "tok/s", "GFLOP/s", "of peak", "weight GB/s", "of BW");
  for (const std::string& preset : absl::GetFlag(FLAGS_presets)) {
    const std::string dir = EnsureModel(preset);
    engine::EngineOptions options;
    options.num_threads = threads;
    options.kv_cache_bytes = int64_t{1} << 30;
    std::unique_ptr<engine::Engine> engine = OrFail(engine::Engine::Load(dir, options));
    const ModelFacts facts = Facts(engine->config());
    std::mt19937_64 rng(1);
    const double prefill = MeasurePrefill(*engine, rng);
    // Prefill samples once per prompt: the LM head runs for one token in prefill_len.
    const double prefill_flops =
        prefill * 2.0 *
        (facts.linear_params +
         facts.head_params / static_cast<double>(absl::GetFlag(FLAGS_prefill_len)));
    std::printf("%-6s %7.1fM %8s %6d %10.1f %9.2f %7.0f%% %12s %8s\n", preset.c_str(),
                facts.params / 1e6, "prefill", 4, prefill, prefill_flops / 1e9,
                100.0 * prefill_flops / peak_flops, "-", "-");
    for (const std::string& b : absl::GetFlag(FLAGS_batches)) {
      const int64_t batch = std::stoll(b);
      const double tps = MeasureDecode(*engine, rng, batch);
      const double steps_per_s = tps / batch;
      const double weight_bw = steps_per_s * facts.step_bytes;
      const double flops = tps * 2.0 * (facts.linear_params + facts.head_params);
      std::printf("%-6s %7.1fM %8s %6lld %10.1f %9.2f %7.0f%% %12.2f %7.0f%%\n", preset.c_str(),
                  facts.params / 1e6, "decode", static_cast<long long>(batch), tps, flops / 1e9,
                  100.0 * flops / peak_flops, weight_bw / 1e9, 100.0 * weight_bw / bandwidth);
    }
  }
  std::printf(
      "ceilings: a decode step reads every weight once, so steps/s <= bandwidth / weight "
      "bytes ('of BW'); matrix products cannot beat the fp32 multiply-add peak ('of peak').\n");
  return 0;
}

}  // namespace
}  // namespace rackserve::bench

int main(int argc, char** argv) { return rackserve::bench::Main(argc, argv); }
