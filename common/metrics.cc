#include "common/metrics.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <type_traits>
#include <utility>

namespace vitrine {
namespace {

template <typename Series>
constexpr MetricType type_of() {
  if constexpr (std::is_same_v<Series, CounterSeries>) {
    return MetricType::kCounter;
  } else if constexpr (std::is_same_v<Series, GaugeSeries>) {
    return MetricType::kGauge;
  } else {
    static_assert(std::is_same_v<Series, HistogramSeries>);
    return MetricType::kHistogram;
  }
}

const char* type_name(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

bool is_name(std::string_view s, bool allow_colon) {
  auto first = [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (allow_colon && c == ':');
  };
  auto rest = [&](char c) { return first(c) || (c >= '0' && c <= '9'); };
  return !s.empty() && first(s[0]) && std::all_of(s.begin() + 1, s.end(), rest);
}

void check_bounds(const std::vector<double>& bounds, const std::string& what) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && !(bounds[i - 1] < bounds[i]))) {
      throw std::invalid_argument(fmt::format(
          "{}: bucket bounds must be finite and strictly increasing (+Inf is implied), got [{}]",
          what, fmt::join(bounds, ", ")));
    }
  }
}

// Prometheus spells the special values its own way; everything else is the
// shortest decimal that reads back as the same double.
void append_value(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
  } else if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
  } else {
    fmt::format_to(std::back_inserter(out), "{}", value);
  }
}

void append_escaped(std::string& out, std::string_view text, bool escape_quote) {
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && escape_quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

// `{a="x",b="y"}`, with `le="bound"` last when `le` is given; nothing when
// there are no labels at all.
void append_labels(std::string& out, const std::vector<std::string>& names,
                   const std::vector<std::string>& values, const std::string* le = nullptr) {
  if (names.empty() && le == nullptr) return;
  out += '{';
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    append_escaped(out, values[i], true);
    out += '"';
  }
  if (le != nullptr) {
    if (!names.empty()) out += ',';
    out += "le=\"";
    out += *le;
    out += '"';
  }
  out += '}';
}

}  // namespace

void CounterSeries::inc(double amount) {
  if (!(amount >= 0)) {  // NaN included
    throw std::invalid_argument(fmt::format("a counter only goes up: inc({})", amount));
  }
  value_.fetch_add(amount, std::memory_order_relaxed);
}

HistogramSeries::HistogramSeries(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {
  check_bounds(bounds_, "histogram");
}

void HistogramSeries::observe(double value) {
  // The first bucket with value <= bound; NaN is <= nothing and lands in +Inf.
  const size_t bucket = std::partition_point(bounds_.begin(), bounds_.end(),
                                             [value](double bound) { return !(value <= bound); }) -
                        bounds_.begin();
  std::lock_guard lock(mutex_);
  ++counts_[bucket];
  sum_ += value;
}

HistogramSeries::Snapshot HistogramSeries::snapshot() const {
  Snapshot out;
  out.cumulative.resize(counts_.size());
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < counts_.size(); ++i) {
    out.count += counts_[i];
    out.cumulative[i] = out.count;
  }
  out.sum = sum_;
  return out;
}

MetricFamily::MetricFamily(std::string name, std::string help, MetricType type,
                           std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {
  if (!is_name(name_, true)) {
    throw std::invalid_argument(
        fmt::format("invalid metric name '{}': it must match [a-zA-Z_:][a-zA-Z0-9_:]*", name_));
  }
  for (size_t i = 0; i < label_names_.size(); ++i) {
    const std::string& label = label_names_[i];
    if (!is_name(label, false)) {
      throw std::invalid_argument(fmt::format(
          "invalid label name '{}' of metric '{}': it must match [a-zA-Z_][a-zA-Z0-9_]*", label,
          name_));
    }
    if (label.starts_with("__")) {
      throw std::invalid_argument(
          fmt::format("label name '{}' of metric '{}' is reserved: names starting with '__' are "
                      "Prometheus' own",
                      label, name_));
    }
    if (label == "le" && type_ == MetricType::kHistogram) {
      throw std::invalid_argument(fmt::format(
          "label name 'le' of histogram '{}' is reserved for the bucket bounds", name_));
    }
    if (std::find(label_names_.begin(), label_names_.begin() + i, label) !=
        label_names_.begin() + i) {
      throw std::invalid_argument(
          fmt::format("label name '{}' appears twice in metric '{}'", label, name_));
    }
  }
}

template <typename Series>
Family<Series>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                       std::vector<double> bounds, std::function<double()> read)
    : MetricFamily(std::move(name), std::move(help), type_of<Series>(), std::move(label_names)),
      bounds_(std::move(bounds)) {
  if constexpr (std::is_same_v<Series, HistogramSeries>) {
    check_bounds(bounds_, fmt::format("histogram '{}'", name_));
  }
  if (!label_names_.empty()) return;
  // A family without labels has its series from the start, so it renders
  // (as 0) before anything happened.
  std::unique_ptr<Series> series;
  if constexpr (std::is_same_v<Series, HistogramSeries>) {
    series = std::make_unique<HistogramSeries>(bounds_);
  } else if constexpr (std::is_same_v<Series, GaugeSeries>) {
    series = std::make_unique<GaugeSeries>(std::move(read));
  } else {
    series = std::make_unique<Series>();
  }
  if constexpr (std::is_same_v<Series, GaugeSeries>) {
    if (!series->is_callback()) unlabelled_ = series.get();
  } else {
    unlabelled_ = series.get();
  }
  series_.emplace(std::vector<std::string>{}, std::move(series));
}

template <typename Series>
void Family<Series>::throw_not_unlabelled() const {
  if (label_names_.empty()) {
    throw std::invalid_argument(
        fmt::format("gauge '{}' is read from a callback; it cannot be set", name_));
  }
  throw std::invalid_argument(
      fmt::format("metric '{}' has labels ({}): pick a series with labels()", name_,
                  fmt::join(label_names_, ", ")));
}

template <typename Series>
Series& Family<Series>::labels(const std::vector<std::string>& values) {
  if (values.size() != label_names_.size()) {
    throw std::invalid_argument(fmt::format("metric '{}' has labels ({}), got {} value(s)", name_,
                                            fmt::join(label_names_, ", "), values.size()));
  }
  std::lock_guard lock(mutex_);
  auto it = series_.find(values);
  if (it == series_.end()) {
    if constexpr (std::is_same_v<Series, HistogramSeries>) {
      it = series_.emplace(values, std::make_unique<HistogramSeries>(bounds_)).first;
    } else {
      it = series_.emplace(values, std::make_unique<Series>()).first;
    }
  }
  if constexpr (std::is_same_v<Series, GaugeSeries>) {
    if (it->second->is_callback()) throw_not_unlabelled();
  }
  return *it->second;
}

template <typename Series>
void Family<Series>::render(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  append_escaped(out, help_, false);
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += type_name(type_);
  out += '\n';

  // Series are never removed, so the pointers outlive the lock, and reading
  // values (callbacks included) does not hold up labels() on other threads.
  std::vector<std::pair<const std::vector<std::string>*, const Series*>> all;
  {
    std::lock_guard lock(mutex_);
    all.reserve(series_.size());
    for (const auto& [values, series] : series_) all.emplace_back(&values, series.get());
  }
  auto line = [&](const char* suffix, const std::vector<std::string>& values, double value,
                  const std::string* le = nullptr) {
    out += name_;
    out += suffix;
    append_labels(out, label_names_, values, le);
    out += ' ';
    append_value(out, value);
    out += '\n';
  };
  for (const auto& [values, series] : all) {
    if constexpr (std::is_same_v<Series, HistogramSeries>) {
      const HistogramSeries::Snapshot s = series->snapshot();
      std::string le;
      for (size_t i = 0; i < s.cumulative.size(); ++i) {
        le.clear();
        append_value(le, i < bounds_.size() ? bounds_[i] : std::numeric_limits<double>::infinity());
        line("_bucket", *values, static_cast<double>(s.cumulative[i]), &le);
      }
      line("_sum", *values, s.sum);
      line("_count", *values, static_cast<double>(s.count));
    } else {
      line("", *values, series->value());
    }
  }
}

template class Family<CounterSeries>;
template class Family<GaugeSeries>;
template class Family<HistogramSeries>;

Counter::Counter(std::string name, std::string help, std::vector<std::string> label_names)
    : Family(std::move(name), std::move(help), std::move(label_names), {}, nullptr) {}

Gauge::Gauge(std::string name, std::string help, std::vector<std::string> label_names)
    : Family(std::move(name), std::move(help), std::move(label_names), {}, nullptr),
      is_callback_(false) {}

Gauge::Gauge(std::string name, std::string help, std::function<double()> read)
    : Family(std::move(name), std::move(help), {}, {}, std::move(read)), is_callback_(true) {
  if (unlabelled_ != nullptr) {
    throw std::invalid_argument(fmt::format("gauge '{}': the callback is empty", name_));
  }
}

Histogram::Histogram(std::string name, std::string help, std::vector<double> bounds,
                     std::vector<std::string> label_names)
    : Family(std::move(name), std::move(help), std::move(label_names), std::move(bounds), nullptr) {
}

template <typename F>
F& MetricsRegistry::add(std::unique_ptr<F> made) {
  std::lock_guard lock(mutex_);
  const auto it = by_name_.find(made->name());
  if (it == by_name_.end()) {
    F& out = *made;
    by_name_.emplace(made->name(), made.get());
    families_.push_back(std::move(made));
    return out;
  }
  const MetricFamily& existing = *it->second;
  auto clash = [&](const std::string& what) {
    return std::invalid_argument(
        fmt::format("metric '{}' is registered already with {}", made->name(), what));
  };
  if (existing.type() != made->type()) {
    throw clash(
        fmt::format("type {}, not {}", type_name(existing.type()), type_name(made->type())));
  }
  if (existing.label_names() != made->label_names()) {
    throw clash(fmt::format("labels ({}), not ({})", fmt::join(existing.label_names(), ", "),
                            fmt::join(made->label_names(), ", ")));
  }
  if (existing.help() != made->help()) {
    throw clash(fmt::format("help \"{}\", not \"{}\"", existing.help(), made->help()));
  }
  // The types match, so the family is an F.
  F& family = static_cast<F&>(*it->second);
  if constexpr (std::is_same_v<F, Histogram>) {
    if (family.bounds() != made->bounds()) {
      throw clash(fmt::format("buckets [{}], not [{}]", fmt::join(family.bounds(), ", "),
                              fmt::join(made->bounds(), ", ")));
    }
  }
  if constexpr (std::is_same_v<F, Gauge>) {
    if (family.is_callback() || made->is_callback()) throw clash("a gauge of its own");
  }
  return family;
}

Counter& MetricsRegistry::counter(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names) {
  return add(std::make_unique<Counter>(name, help, std::move(label_names)));
}

Gauge& MetricsRegistry::gauge(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names) {
  return add(std::make_unique<Gauge>(name, help, std::move(label_names)));
}

Histogram& MetricsRegistry::histogram(const std::string& name, const std::string& help,
                                      std::vector<double> bounds,
                                      std::vector<std::string> label_names) {
  return add(std::make_unique<Histogram>(name, help, std::move(bounds), std::move(label_names)));
}

void MetricsRegistry::gauge_callback(const std::string& name, const std::string& help,
                                     std::function<double()> read) {
  add(std::make_unique<Gauge>(name, help, std::move(read)));
}

std::string MetricsRegistry::render() const {
  std::vector<const MetricFamily*> families;
  {
    std::lock_guard lock(mutex_);
    for (const auto& family : families_) families.push_back(family.get());
  }
  std::string out;
  for (const MetricFamily* family : families) family->render(out);
  return out;
}

double process_resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  if (!(statm >> pages >> resident)) return 0;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

void add_process_metrics(MetricsRegistry& registry) {
  registry.gauge_callback("process_resident_memory_bytes", "Resident memory size in bytes",
                          process_resident_bytes);
}

}  // namespace vitrine
