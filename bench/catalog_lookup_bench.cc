// Benchmark: how fast and how well catalog.sqlite finds a product from a
// user's wording of its title.
//
// Takes the titles of the test split of a dataset made by `vitrine prepare`
// (tasks/describe/test.jsonl), makes four noisy wordings of each as users
// type them (lowercase without punctuation; "what is ...?"; "o que é ..."; a
// middle word dropped), and times Catalog::find_by_title on each after one
// warm-up pass. Prints latency percentiles and top-1 / top-5 accuracy (a hit
// is the product itself or one with the same title). Not a test: figures
// depend on the machine.
//
// Usage: catalog_lookup_bench DATASET_DIR [--queries 2000] [--slowest N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "catalog/catalog.h"

namespace {

struct Query {
  std::string wording;
  std::string uid;
  std::string title;
};

std::string plain_lower(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if ((c >= 'A' && c <= 'Z')) {
      out.push_back(static_cast<char>(c + 32));
    } else if (c == ':' || c == ',' || c == '(' || c == ')' || c == '[' || c == ']' || c == '!' ||
               c == '?') {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string drop_middle_word(const std::string& s) {
  std::vector<std::string> words;
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find(' ', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) words.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  if (words.size() < 3) return s;
  words.erase(words.begin() + static_cast<std::ptrdiff_t>(words.size() / 2));
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DATASET_DIR [--queries N]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  size_t max_titles = 500;
  size_t slowest = 0;  // print the slowest wordings to stderr
  for (int i = 2; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--queries") max_titles = std::stoul(argv[i + 1]) / 4;
    if (std::string(argv[i]) == "--slowest") slowest = std::stoul(argv[i + 1]);
  }
  std::ifstream in(dir + "/tasks/describe/test.jsonl");
  if (!in) {
    std::fprintf(stderr, "cannot read %s/tasks/describe/test.jsonl\n", dir.c_str());
    return 1;
  }
  std::vector<std::pair<std::string, std::string>> titles;  // uid, title
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    titles.emplace_back(j["uid"], j["prompt"]);
  }
  const size_t stride = std::max<size_t>(1, titles.size() / max_titles);
  std::vector<Query> queries;
  for (size_t i = 0; i < titles.size() && queries.size() < max_titles * 4; i += stride) {
    const auto& [uid, title] = titles[i];
    queries.push_back({plain_lower(title), uid, title});
    queries.push_back({"what is " + title + "?", uid, title});
    queries.push_back({"o que é " + plain_lower(title), uid, title});
    queries.push_back({drop_middle_word(title), uid, title});
  }
  vitrine::catalog::Catalog catalog(dir + "/catalog.sqlite");
  for (const auto& q : queries)
    catalog.find_by_title(q.wording);  // warm-up: page cache, statements
  std::vector<double> micros;
  size_t top1 = 0, top5 = 0;
  for (const auto& q : queries) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto matches = catalog.find_by_title(q.wording, 5);
    micros.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    for (size_t k = 0; k < matches.size(); ++k) {
      if (matches[k].uid == q.uid || matches[k].title == q.title) {
        top1 += k == 0;
        ++top5;
        break;
      }
    }
  }
  std::vector<size_t> order(queries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return micros[a] > micros[b]; });
  for (size_t i = 0; i < std::min(slowest, order.size()); ++i) {
    std::fprintf(stderr, "%8.0f us  %s\n", micros[order[i]], queries[order[i]].wording.c_str());
  }
  const double n = static_cast<double>(queries.size());
  std::printf(
      "{\"products\": %lld, \"queries\": %zu, \"median_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": "
      "%.1f, "
      "\"max_us\": %.1f, \"top1\": %.4f, \"top5\": %.4f}\n",
      static_cast<long long>(catalog.size()), queries.size(), percentile(micros, 0.5),
      percentile(micros, 0.9), percentile(micros, 0.99),
      *std::max_element(micros.begin(), micros.end()), static_cast<double>(top1) / n,
      static_cast<double>(top5) / n);
  return 0;
}
