#include "tests/engine/reference_llama.h"

#include <cmath>

namespace rackserve::testing {
namespace {

std::vector<double> ToDouble(const std::vector<float>& v) { return {v.begin(), v.end()}; }

std::vector<double> Dequantize(const numerics::Fp4Matrix& m) {
  std::vector<float> f(m.rows * m.cols);
  numerics::DequantizeFp4(m, f);
  return ToDouble(f);
}

// y[n] = sum_k w[n][k] x[k]
std::vector<double> MatVec(const std::vector<double>& w, const std::vector<double>& x, int64_t n) {
  const int64_t k = static_cast<int64_t>(x.size());
  std::vector<double> y(n, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    double acc = 0;
    for (int64_t j = 0; j < k; ++j) acc += w[i * k + j] * x[j];
    y[i] = acc;
  }
  return y;
}

std::vector<double> RmsNorm(const std::vector<double>& x, const std::vector<double>& w,
                            double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
  return y;
}

// Llama 3.1 frequency scaling, written out independently of runtime/model/rope_frequencies.
std::vector<double> InvFreq(const model::ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<double> f(half);
  for (int64_t i = 0; i < half; ++i) {
    f[i] = 1.0 / std::pow(c.rope_theta, 2.0 * i / static_cast<double>(c.head_dim));
    if (c.rope_scaling.type == model::RopeScaling::Type::kLlama3) {
      const auto& s = c.rope_scaling;
      const double wavelen = 2 * M_PI / f[i];
      const double low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
      const double high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
      if (wavelen > low_wavelen) {
        f[i] /= s.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                              (s.high_freq_factor - s.low_freq_factor);
        f[i] = (1 - smooth) * f[i] / s.factor + smooth * f[i];
      }
    }
  }
  return f;
}

void Rope(std::vector<double>& x, int64_t heads, int64_t d, int64_t pos,
          const std::vector<double>& inv_freq) {
  for (int64_t h = 0; h < heads; ++h) {
    double* v = x.data() + h * d;
    for (int64_t i = 0; i < d / 2; ++i) {
      const double a = v[i], b = v[i + d / 2];
      const double angle = static_cast<double>(pos) * inv_freq[i];
      v[i] = a * std::cos(angle) - b * std::sin(angle);
      v[i + d / 2] = b * std::cos(angle) + a * std::sin(angle);
    }
  }
}

}  // namespace

ReferenceLlama::ReferenceLlama(const model::LlamaWeights& w)
    : config_(w.config),
      embed_(ToDouble(w.embed_tokens)),
      final_norm_(ToDouble(w.final_norm)),
      lm_head_(ToDouble(w.lm_head_matrix())) {
  for (const auto& l : w.layers) {
    layers_.push_back({ToDouble(l.input_norm), ToDouble(l.post_attention_norm),
                       Dequantize(l.q_proj()), Dequantize(l.k_proj()), Dequantize(l.v_proj()),
                       Dequantize(l.o_proj()), Dequantize(l.gate_proj()), Dequantize(l.up_proj()),
                       Dequantize(l.down_proj())});
  }
}

std::vector<std::vector<double>> ReferenceLlama::Forward(const std::vector<int32_t>& tokens) const {
  const model::ModelConfig& c = config_;
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t H = c.hidden_size, D = c.head_dim;
  const int64_t group = c.num_attention_heads / c.num_key_value_heads;
  const std::vector<double> inv_freq = InvFreq(c);

  std::vector<std::vector<double>> x(T);
  for (int64_t t = 0; t < T; ++t) {
    x[t].assign(embed_.begin() + tokens[t] * H, embed_.begin() + (tokens[t] + 1) * H);
  }
  for (const Layer& layer : layers_) {
    std::vector<std::vector<double>> q(T), k(T), v(T);
    for (int64_t t = 0; t < T; ++t) {
      const std::vector<double> h = RmsNorm(x[t], layer.input_norm, c.rms_norm_eps);
      q[t] = MatVec(layer.q, h, c.q_size());
      k[t] = MatVec(layer.k, h, c.kv_size());
      v[t] = MatVec(layer.v, h, c.kv_size());
      Rope(q[t], c.num_attention_heads, D, t, inv_freq);
      Rope(k[t], c.num_key_value_heads, D, t, inv_freq);
    }
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> attn(c.q_size(), 0.0);
      for (int64_t h = 0; h < c.num_attention_heads; ++h) {
        const int64_t kvh = h / group;
        std::vector<double> scores(t + 1);
        double max_score = -INFINITY;
        for (int64_t s = 0; s <= t; ++s) {
          double dot = 0;
          for (int64_t i = 0; i < D; ++i) dot += q[t][h * D + i] * k[s][kvh * D + i];
          scores[s] = dot / std::sqrt(static_cast<double>(D));
          max_score = std::max(max_score, scores[s]);
        }
        double denom = 0;
        for (double& s : scores) denom += (s = std::exp(s - max_score));
        for (int64_t s = 0; s <= t; ++s) {
          for (int64_t i = 0; i < D; ++i) attn[h * D + i] += scores[s] / denom * v[s][kvh * D + i];
        }
      }
      const std::vector<double> o = MatVec(layer.o, attn, H);
      for (int64_t i = 0; i < H; ++i) x[t][i] += o[i];
      const std::vector<double> h = RmsNorm(x[t], layer.post_norm, c.rms_norm_eps);
      const std::vector<double> gate = MatVec(layer.gate, h, c.intermediate_size);
      const std::vector<double> up = MatVec(layer.up, h, c.intermediate_size);
      std::vector<double> act(c.intermediate_size);
      for (int64_t i = 0; i < c.intermediate_size; ++i) {
        act[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
      }
      const std::vector<double> down = MatVec(layer.down, act, H);
      for (int64_t i = 0; i < H; ++i) x[t][i] += down[i];
    }
  }
  std::vector<std::vector<double>> logits(T);
  for (int64_t t = 0; t < T; ++t) {
    logits[t] = MatVec(lm_head_, RmsNorm(x[t], final_norm_, c.rms_norm_eps), c.vocab_size);
  }
  return logits;
}

}  // namespace rackserve::testing
