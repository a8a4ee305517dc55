// The study's text-overlap scores, computed as the reference tools do:
//
// * ROUGE-1, ROUGE-2 and ROUGE-L F1 as Google's rouge_score computes them by
//   default: lowercased, every run of characters outside [a-z0-9] a token
//   boundary, no stemming; ROUGE-L from the longest common subsequence of
//   one reference and one candidate (rougeL, not rougeLsum). Averaged over
//   pairs by the caller.
// * BLEU-4 as sacreBLEU's corpus_bleu with its defaults: the 13a tokeniser
//   (mteval-v13a), n-gram counts summed over the corpus, exponential
//   smoothing of zero counts, the brevity penalty on total lengths.
// * Faithfulness: the share of an answer's content words found in the
//   product's description (a grounded answer should say what the
//   description says, not invent).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vitrine::training {

// rouge_score's default tokens of `text`.
std::vector<std::string> rouge_tokens(std::string_view text);

struct RougeScores {
  double rouge1 = 0, rouge2 = 0, rougeL = 0;  // F1 in [0, 1]
};
RougeScores rouge(std::string_view reference, std::string_view candidate);

// sacreBLEU's 13a tokens of `text`.
std::vector<std::string> bleu_13a_tokens(std::string_view text);

struct BleuScore {
  double score = 0;           // 0 to 100
  double precisions[4] = {};  // per n-gram order, percent (smoothed as sacreBLEU)
  double brevity_penalty = 0;
  int64_t hypothesis_length = 0;  // tokens
  int64_t reference_length = 0;
};
// Corpus BLEU of hypotheses against one reference each.
BleuScore corpus_bleu(const std::vector<std::string>& hypotheses,
                      const std::vector<std::string>& references);

// The content words of `text`, in order, repeats kept: its words (runs of
// ASCII letters, digits or non-ASCII bytes, so "descrição" is one word),
// ASCII-lowercased, less a small list of English and Portuguese stopwords
// (articles, pronouns, prepositions, conjunctions, auxiliaries) and the
// words of the dataset's answer lead-ins ("The description says:",
// "Segundo a descrição:"), which add no fact.
std::vector<std::string> content_words(std::string_view text);

// The share of `answer`'s content words (repeats counted) that are among
// the words of `description`, in [0, 1]; nothing when the answer has no
// content word.
std::optional<double> faithfulness(std::string_view answer, std::string_view description);

}  // namespace vitrine::training
