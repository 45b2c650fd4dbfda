// Tensor- and pipeline-parallel replicas as real processes (rackserve-generate --tp/--pp, UCX on
// this machine) against the single-process result: the same greedy tokens and logits within
// 1e-4 normalized error; a rank killed mid-generation fails the replica within 5 seconds.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/io/safetensors_file.h"
#include "runtime/model/model_generator.h"

namespace rackserve::tools {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct ProcessResult {
  int exit_code = -1;
  std::string out, err;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Starts rackserve-generate with `args`; stdout and stderr go to files under `dir`.
pid_t Start(const std::string& dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv_strings = {RACKSERVE_GENERATE_BIN};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  const std::string out = dir + "/out", err = dir + "/err";
  const pid_t pid = fork();
  if (pid == 0) {
    if (!freopen(out.c_str(), "w", stdout) || !freopen(err.c_str(), "w", stderr)) _exit(126);
    std::vector<char*> argv;
    for (auto& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

ProcessResult Wait(const std::string& dir, pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  ProcessResult run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.out = ReadAll(dir + "/out");
  run.err = ReadAll(dir + "/err");
  return run;
}

ProcessResult Generate(const std::string& name, std::vector<std::string> args) {
  const std::string dir = ::testing::TempDir() + "/rackserve_parallel_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  args.push_back("--logits-out=" + dir + "/logits.safetensors");
  ProcessResult run = Wait(dir, Start(dir, args));
  EXPECT_EQ(run.exit_code, 0) << name << ":\n" << run.err;
  return run;
}

std::vector<float> Logits(const std::string& name, int prompt) {
  const std::string path =
      ::testing::TempDir() + "/rackserve_parallel_" + name + "/logits.safetensors";
  auto file = io::SafetensorsFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return {};
  const io::TensorView* t = (*file)->Find(absl::StrCat("logits.", prompt));
  EXPECT_NE(t, nullptr);
  if (t == nullptr) return {};
  std::vector<float> v(t->numel());
  std::memcpy(v.data(), t->data.data(), t->data.size());
  return v;
}

class GenerateParallelTest : public ::testing::TestWithParam<std::vector<std::string>> {
 protected:
  static void SetUpTestSuite() {
    // 4 layers so that pp 4 has a layer per stage; 8 query heads over 2 KV heads, so tp 4
    // replicates KV heads.
    model::ModelConfig c = *model::PresetModelConfig("tiny");
    c.num_hidden_layers = 4;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.intermediate_size = 384;  // 96 columns per rank at tp 4: whole FP4 blocks
    model_ = new std::string(::testing::TempDir() + "/rackserve_parallel_model");
    model::RandomModelOptions options;
    options.config = c;
    options.seed = 11;
    options.with_tokenizer = false;
    ASSERT_TRUE(model::WriteRandomModel(*model_, options).ok());
    reference_ = new ProcessResult(Generate("tp1", Args({})));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete reference_;
  }

  // Three prompts of different lengths, greedy, with a small step budget so that prompts are
  // chunked and batches mix prefill and decode.
  static std::vector<std::string> Args(std::vector<std::string> extra) {
    std::vector<std::string> args = {"--model=" + *model_,
                                     "--prompt-ids=1 5 9 200 17,1 7,1 300 301 302 303 304 305 306 "
                                     "307 308 309 310 311 312 313 314 315",
                                     "--max-new-tokens=12",
                                     "--ignore-eos",
                                     "--print-ids",
                                     "--max-tokens-per-step=8",
                                     "--threads=1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  static std::string* model_;
  static ProcessResult* reference_;
};
std::string* GenerateParallelTest::model_ = nullptr;
ProcessResult* GenerateParallelTest::reference_ = nullptr;

TEST_P(GenerateParallelTest, SameTokensAndLogitsAsOneProcess) {
  std::string name = "layout";
  for (const std::string& a : GetParam()) name += "_" + a.substr(2);
  const ProcessResult run = Generate(name, Args(GetParam()));
  EXPECT_EQ(run.out, reference_->out);
  for (int prompt = 0; prompt < 3; ++prompt) {
    const std::vector<float> want = Logits("tp1", prompt), got = Logits(name, prompt);
    ASSERT_EQ(got.size(), want.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      num += (got[i] - want[i]) * (got[i] - want[i]);
      den += want[i] * want[i];
    }
    EXPECT_LT(std::sqrt(num / den), 1e-4) << "prompt " << prompt;
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, GenerateParallelTest,
                         ::testing::Values(std::vector<std::string>{"--tp=2"},
                                           std::vector<std::string>{"--tp=4"},
                                           std::vector<std::string>{"--pp=2"},
                                           std::vector<std::string>{"--pp=4"},
                                           std::vector<std::string>{"--tp=2", "--pp=2"},
                                           std::vector<std::string>{"--pp=2", "--pp-layers=1,3"}));

// The pid of the process whose parent is `parent` and whose command line holds `needle`.
pid_t FindChild(pid_t parent, const std::string& needle) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> fields = absl::StrSplit(line.substr(close + 2), ' ');
    if (fields.size() < 2 || std::stoi(fields[1]) != parent) continue;
    std::string cmdline = ReadAll((entry.path() / "cmdline").string());
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(needle) != std::string::npos) return std::stoi(name);
  }
  return -1;
}

TEST(GenerateParallelFailureTest, KilledRankFailsTheReplicaWithinFiveSeconds) {
  const std::string dir = ::testing::TempDir() + "/rackserve_parallel_kill";
  fs::remove_all(dir);
  fs::create_directories(dir);
  model::RandomModelOptions options;
  options.config = *model::PresetModelConfig("small");
  options.with_tokenizer = false;
  ASSERT_TRUE(model::WriteRandomModel(dir + "/model", options).ok());
  const pid_t launcher =
      Start(dir, {"--model=" + dir + "/model", "--prompt-ids=1 2 3,1 4 5", "--max-new-tokens=2000",
                  "--ignore-eos", "--tp=2", "--threads=1"});
  // Wait until rank 1 runs and the replica is generating, then kill rank 1.
  pid_t rank1 = -1;
  for (int i = 0; i < 200 && rank1 < 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    rank1 = FindChild(launcher, "--rank=1");
  }
  ASSERT_GT(rank1, 0) << "rank 1 never started";
  std::this_thread::sleep_for(std::chrono::seconds(2));
  ASSERT_EQ(kill(rank1, SIGKILL), 0);
  const auto killed = Clock::now();
  const ProcessResult run = Wait(dir, launcher);
  const double seconds = std::chrono::duration<double>(Clock::now() - killed).count();
  EXPECT_NE(run.exit_code, 0);
  EXPECT_LT(seconds, 5.0) << run.err;
  EXPECT_THAT(run.err, ::testing::HasSubstr("rank"));
}

}  // namespace
}  // namespace rackserve::tools
