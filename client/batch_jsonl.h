// The JSONL files of `rackctl batch`: requests in, results out, one JSON object per line.
//
// A request line: {"id": "q1", "prompt": "text" | "prompt_ids": [1, 2], "max_new_tokens": 64,
// "temperature": 0.7, "top_p": 0.9, "top_k": 40, "seed": 1, "stop_token_ids": [2],
// "ignore_eos": true}. Only a prompt is required; a missing id becomes "line<N>". Empty lines are
// skipped. Pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "client/request_spec.h"

namespace rackserve::client {

// INVALID_ARGUMENT "<source>:<line>: <field>: <what>" for a line that is not a JSON object, an
// unknown field, a field of the wrong type or out of range, no prompt or both prompt forms, or an
// id used twice.
absl::StatusOr<std::vector<RequestSpec>> ParseRequestsJsonl(std::string_view text,
                                                            std::string_view source);

// One request's outcome, as written to results.jsonl.
struct RequestResult {
  std::string id;
  std::vector<int32_t> token_ids;
  bool has_text = false;  // `text` is the decoded output (a tokenizer was available)
  std::string text;
  std::string finish_reason;  // "eos", "stop_token", "max_tokens", "length", "cancelled", ""
  int64_t prompt_tokens = 0;
  double queue_seconds = 0;  // the coordinator's timings
  double ttft_seconds = 0;
  double total_seconds = 0;
  std::string error;  // "" when the request completed; else "<CODE>: <message>"
};

// One line of JSON, without the newline: id, token_ids, text (when has_text), finish_reason,
// prompt_tokens, timings {queue_s, ttft_s, total_s}, error (null when none).
std::string ResultJsonLine(const RequestResult& result);

}  // namespace rackserve::client
