// The serving engine's limits (models/engine.h), in a header of their own so
// a config can hold them without the engine's (and libtorch's) headers.
// These defaults are the ones vitrined ships (configs/router.yaml's engine
// section binds this very struct). Not goals: per-request limits (a
// request's own GenerationOptions say those, within these caps).
#pragma once

namespace vitrine::models {

struct EngineOptions {
  int max_batch = 8;   // rows decoded together: more is more throughput in total, each step
                       // (so each request) a little slower
  int max_queue = 64;  // requests waiting at most; more are refused at once (RESOURCE_EXHAUSTED)
                       // instead of queueing without bound
  int max_prompt_tokens = 1024;  // longer prompts are refused: bounds prefill time and memory
  int max_new_tokens = 256;      // cap on any request's max_new_tokens: bounds a row's cache
};

}  // namespace vitrine::models
