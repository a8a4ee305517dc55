// The agents' options, in a header of their own so a config (vitrined's
// routing section) can hold and fill these very structs without the
// agents' model and catalogue headers. The defaults are the ones vitrined
// ships in configs/router.yaml. Not goals: anything read from a file here
// (router/router_config.cc binds the YAML keys to these fields).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include "agents/agent_results.h"

namespace vitrine::agents {

// ClassifierAgent (agents/classifier_agent.h).
struct ClassifierAgentOptions {
  double min_confidence = 0.6;    // below it the default route is taken: higher sends more
                                  // borderline texts to the default adapter
  Task default_task = Task::kQa;  // route when unsure: qa, since a question answered as a
                                  // description is still on topic, the reverse is not
  bool exact_titles = true;       // rule 1; false trusts the classifier alone
  bool near_titles = true;        // rule 2: a text that is a catalogue title as typed (lowercase,
                                  // a typo, small words dropped, cut short) is described; false
                                  // leaves those to the classifier
};

// DescribeAgent (agents/describe_agent.h).
struct DescribeAgentOptions {
  SourceOptions sources{.min_score = 0.8,  // a title names its record closely; near titles
                                           // (other editions, other products) stay out
                        .max_sources = 3};
};

// What the qa prompt carries of the product a question is about: the
// prompts library's (prompts/prompts.h), where training takes it from too.
using prompts::Grounding;
using prompts::grounding_name;
using prompts::parse_grounding;

// QaAgent (agents/qa_agent.h).
struct QaAgentOptions {
  // Unset (the default): the grounding each adapter was trained with (its
  // prompt_format.json), so the adapter is asked as it learnt. Set: every
  // adapter is asked with this one, a prompt it may never have seen.
  std::optional<Grounding> grounding;
  SourceOptions sources{.min_score = 0.6,   // a question adds words to the title: a lower bar
                                            // than a bare title's, still above partial matches
                        .max_sources = 1};  // the product the question is about
  size_t max_description_chars = 0;         // descriptions cut at a word boundary after this
                                            // many bytes; 0 = the adapter's own cut (as trained)
};

// What the daemon answers to a question about no known product.
enum class UnknownProduct {
  kSay,       // the fixed sentence and the closest titles; no model runs
  kGenerate,  // the qa adapter answers anyway, as before: it writes from nothing
};
// "say", "generate"; parse_unknown_product throws std::invalid_argument
// naming the value.
std::string_view unknown_product_name(UnknownProduct answer);
UnknownProduct parse_unknown_product(std::string_view name);

// UnknownProductAgent (agents/unknown_product_agent.h).
struct UnknownProductOptions {
  UnknownProduct answer = UnknownProduct::kSay;  // say: honest and instant; generate: an invented
                                                 // answer, for studying what the model does
  int max_closest = 3;                           // closest titles named at most; 0 names none
  double closest_min_score = 0.25;  // title-match score (0 to 1) a title needs to be named as
                                    // closest: lower offers more titles, fewer of them related
};

}  // namespace vitrine::agents
