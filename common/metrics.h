// Prometheus metrics for the servers (vitrined, vitrine-gateway): counters,
// gauges (set, or read from a callback at scrape time) and histograms, as
// families by name with fixed label names, rendered in the text exposition
// format 0.0.4. Each server serves render() on GET /metrics its own way
// (router/metrics_server.h for the daemon).
//
// A family holds one series per tuple of label values. labels() finds or
// makes a series under the family's lock; keep the reference it returns (it
// lives as long as the registry) and inc/set/add/observe on it cost an
// atomic or a per-series lock, with no allocation. A family without labels
// has its one series from the start, reached by the family's own
// inc/set/add/observe. Families render in registration order, their series
// sorted by label values.
//
// Not goals: the OpenMetrics format, protobuf exposition, timestamps,
// summaries (quantiles), removing series, or push to a gateway.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace vitrine {

// One counter series: only goes up (requests served, tokens generated).
class CounterSeries {
 public:
  // Throws std::invalid_argument when `amount` is negative.
  void inc(double amount = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// One gauge series: set and added to, or read from a callback at scrape time.
class GaugeSeries {
 public:
  // `read`, when given, is the series' value and set/add have no effect.
  explicit GaugeSeries(std::function<double()> read = nullptr) : read_(std::move(read)) {}
  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  void add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  double value() const { return read_ ? read_() : value_.load(std::memory_order_relaxed); }
  bool is_callback() const { return static_cast<bool>(read_); }

 private:
  std::atomic<double> value_{0.0};
  const std::function<double()> read_;
};

// One histogram series: observations counted into buckets `le` (value <=
// bound) and +Inf, with their sum. observe() takes the series' own short
// lock so that a scrape sees buckets, sum and count of the same observations.
class HistogramSeries {
 public:
  // `bounds`: finite, strictly increasing upper bounds; +Inf is implied.
  explicit HistogramSeries(std::vector<double> bounds);
  void observe(double value);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // [bounds.size() + 1], the last is +Inf
    double sum = 0.0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> counts_;  // [bounds.size() + 1], per bucket, not cumulative
  double sum_ = 0.0;
};

enum class MetricType { kCounter, kGauge, kHistogram };

// What every family has: name, help, type, label names, and rendering.
class MetricFamily {
 public:
  virtual ~MetricFamily() = default;
  MetricFamily(const MetricFamily&) = delete;
  MetricFamily& operator=(const MetricFamily&) = delete;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Appends "# HELP", "# TYPE" and every series to `out`.
  virtual void render(std::string& out) const = 0;

 protected:
  // Throws std::invalid_argument naming the bad metric or label name.
  MetricFamily(std::string name, std::string help, MetricType type,
               std::vector<std::string> label_names);

  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
};

// The series of one family, by label values.
template <typename Series>
class Family : public MetricFamily {
 public:
  // The series for `values` (one per label name, in order), made at first
  // use. Throws std::invalid_argument on a wrong number of values, and for
  // a gauge read from a callback.
  Series& labels(const std::vector<std::string>& values);
  void render(std::string& out) const override;

 protected:
  // `read`: for a gauge without labels whose one series is a callback.
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> bounds, std::function<double()> read);
  // The one series of a family without labels; throws otherwise.
  Series& unlabelled() const {
    if (unlabelled_ == nullptr) throw_not_unlabelled();
    return *unlabelled_;
  }
  [[noreturn]] void throw_not_unlabelled() const;

  const std::vector<double> bounds_;  // histograms only
  Series* unlabelled_ = nullptr;      // null with labels, and for a callback gauge

 private:
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Series>> series_;
};

// Families by type; their inc/set/add/observe are for families without
// labels and throw std::invalid_argument on one with labels.
class Counter final : public Family<CounterSeries> {
 public:
  Counter(std::string name, std::string help, std::vector<std::string> label_names = {});
  void inc(double amount = 1.0) { unlabelled().inc(amount); }
};

class Gauge final : public Family<GaugeSeries> {
 public:
  Gauge(std::string name, std::string help, std::vector<std::string> label_names = {});
  // A gauge without labels whose value is `read()` at every scrape.
  Gauge(std::string name, std::string help, std::function<double()> read);
  void set(double value) { unlabelled().set(value); }
  void add(double delta) { unlabelled().add(delta); }
  bool is_callback() const { return is_callback_; }

 private:
  const bool is_callback_;
};

class Histogram final : public Family<HistogramSeries> {
 public:
  // `bounds`: finite, strictly increasing upper bounds; +Inf is implied.
  Histogram(std::string name, std::string help, std::vector<double> bounds,
            std::vector<std::string> label_names = {});
  void observe(double value) { unlabelled().observe(value); }
  const std::vector<double>& bounds() const { return bounds_; }
};

// The families of one process, by name. Asking again for a name with the
// same type, help, label names (and bounds) returns the existing family, so
// each component can ask for the families it uses. Every method throws
// std::invalid_argument naming the name when a metric or label name breaks
// the Prometheus rules or the name is registered already as something else.
class MetricsRegistry {
 public:
  Counter& counter(const std::string& name, const std::string& help,
                   std::vector<std::string> label_names = {});
  Gauge& gauge(const std::string& name, const std::string& help,
               std::vector<std::string> label_names = {});
  Histogram& histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                       std::vector<std::string> label_names = {});
  // A gauge read from `read` at every scrape (queue depth, running batch
  // size), on the scraping thread: `read` must stay callable while the
  // registry can be rendered, and must not register metrics. A name can
  // have only one callback.
  void gauge_callback(const std::string& name, const std::string& help,
                      std::function<double()> read);

  // Every family in the text exposition format 0.0.4.
  std::string render() const;

 private:
  template <typename F>
  F& add(std::unique_ptr<F> made);

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<MetricFamily>> families_;  // in registration order
  std::unordered_map<std::string, MetricFamily*> by_name_;
};


// This process's resident memory in bytes (from /proc/self/statm); 0 when
// unknown.
double process_resident_bytes();

// process_resident_memory_bytes, read at every scrape, as Prometheus'
// client libraries name it.
void add_process_metrics(MetricsRegistry& registry);

}  // namespace vitrine
