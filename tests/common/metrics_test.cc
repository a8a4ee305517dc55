// The servers' Prometheus metrics: the exposition text byte for byte,
// escaping, name rules and exact sums under concurrent updates.
#include "common/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/expect_error.h"

namespace vitrine {
namespace {

using testing::expect_throw_naming;

TEST(MetricsRegistry, RendersEveryTypeInTheTextFormat) {
  MetricsRegistry m;
  Counter& requests = m.counter("vitrine_requests_total", "Requests answered", {"route", "arm"});
  requests.labels({"qa", "tuned"}).inc();
  requests.labels({"qa", "tuned"}).inc(2);
  requests.labels({"describe", "base"}).inc();
  m.counter("vitrine_errors_total", "Requests that failed", {"code"});  // no series yet
  Gauge& loaded = m.gauge("vitrine_adapters_loaded", "Adapters attached");
  loaded.set(3);
  loaded.add(-1);
  int depth = 7;
  m.gauge_callback("vitrine_queue_depth", "Requests waiting", [&] { return double(depth); });
  Histogram& seconds =
      m.histogram("vitrine_request_seconds", "Time to answer", {0.125, 0.5, 1}, {"route"});
  for (double v : {0.0625, 0.125, 0.75, 3.0}) seconds.labels({"qa"}).observe(v);
  m.histogram("vitrine_inter_token_seconds", "Between tokens", {0.01});

  const std::string expected = R"(# HELP vitrine_requests_total Requests answered
# TYPE vitrine_requests_total counter
vitrine_requests_total{route="describe",arm="base"} 1
vitrine_requests_total{route="qa",arm="tuned"} 3
# HELP vitrine_errors_total Requests that failed
# TYPE vitrine_errors_total counter
# HELP vitrine_adapters_loaded Adapters attached
# TYPE vitrine_adapters_loaded gauge
vitrine_adapters_loaded 2
# HELP vitrine_queue_depth Requests waiting
# TYPE vitrine_queue_depth gauge
vitrine_queue_depth 7
# HELP vitrine_request_seconds Time to answer
# TYPE vitrine_request_seconds histogram
vitrine_request_seconds_bucket{route="qa",le="0.125"} 2
vitrine_request_seconds_bucket{route="qa",le="0.5"} 2
vitrine_request_seconds_bucket{route="qa",le="1"} 3
vitrine_request_seconds_bucket{route="qa",le="+Inf"} 4
vitrine_request_seconds_sum{route="qa"} 3.9375
vitrine_request_seconds_count{route="qa"} 4
# HELP vitrine_inter_token_seconds Between tokens
# TYPE vitrine_inter_token_seconds histogram
vitrine_inter_token_seconds_bucket{le="0.01"} 0
vitrine_inter_token_seconds_bucket{le="+Inf"} 0
vitrine_inter_token_seconds_sum 0
vitrine_inter_token_seconds_count 0
)";
  EXPECT_EQ(m.render(), expected);

  depth = 9;  // read again at every scrape
  EXPECT_NE(m.render().find("\nvitrine_queue_depth 9\n"), std::string::npos);
}

TEST(MetricsRegistry, EscapesLabelValuesAndHelp) {
  MetricsRegistry m;
  m.counter("x_total", "a \\ b \"quoted\"\nsecond line", {"v"}).labels({"a\"b\\c\nd"}).inc();
  EXPECT_EQ(m.render(),
            "# HELP x_total a \\\\ b \"quoted\"\\nsecond line\n"
            "# TYPE x_total counter\n"
            "x_total{v=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(MetricsRegistry, SpecialValuesUseThePrometheusSpelling) {
  MetricsRegistry m;
  Gauge& g = m.gauge("g", "h", {"k"});
  g.labels({"inf"}).set(INFINITY);
  g.labels({"minus_inf"}).set(-INFINITY);
  g.labels({"nan"}).set(NAN);
  g.labels({"small"}).set(2.5e-7);
  Histogram& h = m.histogram("h", "h", {1});
  h.observe(NAN);  // in +Inf only, and the sum becomes NaN
  EXPECT_EQ(m.render(),
            "# HELP g h\n# TYPE g gauge\n"
            "g{k=\"inf\"} +Inf\ng{k=\"minus_inf\"} -Inf\ng{k=\"nan\"} NaN\ng{k=\"small\"} 2.5e-07\n"
            "# HELP h h\n# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 1\nh_sum NaN\nh_count 1\n");
}

TEST(MetricsRegistry, RejectsBadNamesNamingThem) {
  MetricsRegistry m;
  for (const std::string name : {"2xx_total", "requests-total", "", "caf\xc3\xa9"}) {
    expect_throw_naming<std::invalid_argument>([&] { m.counter(name, "h"); }, "'" + name + "'");
  }
  for (const std::string label : {"route-name", "1a", "a:b", "__reserved"}) {
    expect_throw_naming<std::invalid_argument>([&] { m.gauge("ok_name", "h", {label}); },
                                               "'" + label + "'");
  }
  expect_throw_naming<std::invalid_argument>([&] { m.histogram("lat", "h", {1}, {"le"}); }, "'le'");
  expect_throw_naming<std::invalid_argument>([&] { m.counter("dup", "h", {"a", "a"}); }, "'a'");
  EXPECT_NO_THROW(m.counter("vitrine:requests:rate5m", "colons are for recording rules"));
  EXPECT_NO_THROW(m.counter("_under", "h", {"_x", "Y9"}));
  // None of the rejected ones was registered.
  EXPECT_EQ(m.render().find("ok_name"), std::string::npos);
}

TEST(MetricsRegistry, SameNameReturnsTheFamilyOnlyWhenEverythingMatches) {
  MetricsRegistry m;
  Counter& a = m.counter("requests_total", "h", {"route"});
  EXPECT_EQ(&m.counter("requests_total", "h", {"route"}), &a);
  expect_throw_naming<std::invalid_argument>([&] { m.gauge("requests_total", "h", {"route"}); },
                                             "'requests_total' is registered already with type "
                                             "counter, not gauge");
  expect_throw_naming<std::invalid_argument>([&] { m.counter("requests_total", "h", {"arm"}); },
                                             "labels (route), not (arm)");
  expect_throw_naming<std::invalid_argument>(
      [&] { m.counter("requests_total", "other", {"route"}); }, "help");
  m.histogram("seconds", "h", {1, 2});
  expect_throw_naming<std::invalid_argument>(
      [&] {
        m.histogram("seconds", "h", {1, 3});
      },
      "buckets [1, 2], not [1, 3]");
  m.gauge_callback("depth", "h", [] { return 1.0; });
  expect_throw_naming<std::invalid_argument>(
      [&] { m.gauge_callback("depth", "h", [] { return 2.0; }); }, "'depth'");
  expect_throw_naming<std::invalid_argument>([&] { m.gauge("depth", "h"); }, "'depth'");
}

TEST(MetricsRegistry, RejectsMisuseOfSeries) {
  MetricsRegistry m;
  Counter& c = m.counter("c_total", "h", {"route", "arm"});
  expect_throw_naming<std::invalid_argument>([&] { c.labels({"qa"}); },
                                             "has labels (route, arm), got 1 value(s)");
  expect_throw_naming<std::invalid_argument>([&] { c.inc(); }, "'c_total' has labels");
  expect_throw_naming<std::invalid_argument>(
      [&] {
        c.labels({"qa", "x"}).inc(-1);
      },
      "only goes up");
  expect_throw_naming<std::invalid_argument>(
      [&] {
        m.histogram("lat", "h", {0.5, 0.5});
      },
      "strictly increasing");
  expect_throw_naming<std::invalid_argument>(
      [&] {
        m.histogram("lat", "h", {1, INFINITY});
      },
      "finite");
  expect_throw_naming<std::invalid_argument>(
      [&] { m.gauge_callback("empty", "h", std::function<double()>()); }, "'empty'");
  // A callback gauge cannot also be set.
  Gauge callback("cb", "h", [] { return 4.0; });
  expect_throw_naming<std::invalid_argument>([&] { callback.set(1); }, "read from a callback");
  expect_throw_naming<std::invalid_argument>([&] { callback.labels({}); }, "read from a callback");
}

TEST(MetricsRegistry, ConcurrentUpdatesSumExactly) {
  MetricsRegistry m;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50000;
  Counter& requests = m.counter("requests_total", "h", {"route"});
  Gauge& in_flight = m.gauge("in_flight", "h");
  Histogram& seconds = m.histogram("seconds", "h", {0.5}, {"route"});
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Every thread looks the series up itself, so they race to make them.
      CounterSeries& qa = requests.labels({"qa"});
      HistogramSeries& lat = seconds.labels({"qa"});
      for (int i = 0; i < kPerThread; ++i) {
        qa.inc();
        in_flight.add(1);
        lat.observe(t % 2 == 0 ? 0.25 : 1.0);
      }
    });
  }
  // Scrapes while the updates run must not disturb them.
  for (int i = 0; i < 20; ++i) m.render();
  for (std::thread& t : threads) t.join();

  EXPECT_EQ(requests.labels({"qa"}).value(), double(kThreads) * kPerThread);
  const HistogramSeries::Snapshot s = seconds.labels({"qa"}).snapshot();
  EXPECT_EQ(s.cumulative,
            (std::vector<uint64_t>{kThreads / 2 * kPerThread, kThreads * kPerThread}));
  EXPECT_EQ(s.count, uint64_t(kThreads) * kPerThread);
  EXPECT_EQ(s.sum, kThreads / 2 * kPerThread * (0.25 + 1.0));
  const std::string text = m.render();
  EXPECT_NE(text.find("\nrequests_total{route=\"qa\"} 200000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nin_flight 200000\n"), std::string::npos) << text;
}

TEST(ProcessMetrics, ResidentMemoryIsReadAtEveryScrape) {
  MetricsRegistry m;
  add_process_metrics(m);
  const double before = process_resident_bytes();
  EXPECT_GT(before, 1 << 20);  // a test binary holds more than a megabyte
  const std::string text = m.render();
  EXPECT_NE(text.find("# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes "),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace vitrine
