#include "training/data_parallel.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <charconv>
#include <cstdlib>
#include <stdexcept>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace vitrine::training {
namespace {

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

int64_t env_integer(const char* name, int64_t fallback, int64_t low, int64_t high) {
  const char* text = env(name);
  if (text == nullptr) return fallback;
  int64_t value = 0;
  const char* end = text + std::char_traits<char>::length(text);
  const auto [ptr, ec] = std::from_chars(text, end, value);
  if (ec != std::errc() || ptr != end || value < low || value > high) {
    throw std::invalid_argument(fmt::format(
        "environment variable {}='{}': expected an integer from {} to {}", name, text, low, high));
  }
  return value;
}

bool is_loopback(const std::string& address) {
  return address == "localhost" || address.starts_with("127.") || address == "::1";
}

c10d::ReduceOp to_c10d(Reduce op) {
  switch (op) {
    case Reduce::kMin:
      return c10d::ReduceOp::MIN;
    case Reduce::kMax:
      return c10d::ReduceOp::MAX;
    case Reduce::kSum:
      break;
  }
  return c10d::ReduceOp::SUM;
}

// The tensors flattened into one buffer, so a collective is one message.
std::vector<at::Tensor> pack(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> flat;
  flat.reserve(tensors.size());
  for (const auto& t : tensors) flat.push_back(t.detach().reshape({-1}));
  return {at::cat(flat)};
}

void unpack(const at::Tensor& buffer, const std::vector<at::Tensor>& tensors) {
  int64_t offset = 0;
  for (const auto& t : tensors) {
    const int64_t n = t.numel();
    t.detach().copy_(buffer.narrow(0, offset, n).view(t.sizes()));
    offset += n;
  }
}

}  // namespace

DataParallelSettings data_parallel_from_environment() {
  DataParallelSettings s;
  s.world_size = static_cast<int>(env_integer("WORLD_SIZE", 1, 1, 65536));
  s.rank = static_cast<int>(env_integer("RANK", 0, 0, s.world_size - 1));
  if (s.world_size > 1 && env("RANK") == nullptr) {
    throw std::invalid_argument(
        fmt::format("WORLD_SIZE={} but RANK is unset: set RANK to this process's rank (0 to {})",
                    s.world_size, s.world_size - 1));
  }
  if (const char* addr = env("MASTER_ADDR")) s.master_addr = addr;
  s.master_port = static_cast<uint16_t>(env_integer("MASTER_PORT", 29500, 1, 65535));
  if (const char* ifname = env("GLOO_SOCKET_IFNAME")) s.interface = ifname;
  s.timeout = std::chrono::seconds(env_integer("VITRINE_DIST_TIMEOUT", 1800, 1, 7 * 86400));
  return s;
}

DataParallel::DataParallel(const DataParallelSettings& settings) : settings_(settings) {
  if (!distributed()) return;
  const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(settings_.timeout);
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = settings_.master_port;
    store_options.isServer = settings_.rank == 0;
    store_options.numWorkers = static_cast<size_t>(settings_.world_size);
    store_options.waitWorkers = true;
    store_options.timeout = timeout;
    store_ = c10::make_intrusive<c10d::TCPStore>(settings_.master_addr, store_options);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    if (!settings_.interface.empty()) {
      options->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForInterface(settings_.interface));
    } else if (is_loopback(settings_.master_addr)) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    options->threads = 1;
    group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, settings_.rank,
                                                         settings_.world_size, options);
  } catch (const std::exception& e) {
    throw std::runtime_error(
        fmt::format("rank {} of {}: cannot join the process group at {}:{} (MASTER_ADDR, "
                    "MASTER_PORT) within {} s: {}",
                    settings_.rank, settings_.world_size, settings_.master_addr,
                    settings_.master_port, settings_.timeout.count(), e.what()));
  }
}

DataParallel::~DataParallel() = default;

void DataParallel::all_reduce_in_place(const std::vector<at::Tensor>& tensors, Reduce op) {
  if (!distributed() || tensors.empty()) return;
  std::vector<at::Tensor> buffer = pack(tensors);
  c10d::AllreduceOptions options;
  options.reduceOp = to_c10d(op);
  group_->allreduce(buffer, options)->wait();
  unpack(buffer[0], tensors);
}

std::vector<double> DataParallel::all_reduce(std::vector<double> values, Reduce op) {
  if (!distributed() || values.empty()) return values;
  at::Tensor t = at::tensor(values, at::kDouble);
  all_reduce_in_place({t}, op);
  for (size_t i = 0; i < values.size(); ++i) values[i] = t[static_cast<int64_t>(i)].item<double>();
  return values;
}

bool DataParallel::agree(double value) {
  // One collective: the largest value and the largest negation (minus the smallest).
  const std::vector<double> most = all_reduce({value, -value}, Reduce::kMax);
  return most[0] == -most[1];
}

void DataParallel::broadcast_from_main(const std::vector<at::Tensor>& tensors) {
  if (!distributed() || tensors.empty()) return;
  std::vector<at::Tensor> buffer = pack(tensors);
  c10d::BroadcastOptions options;
  options.rootRank = 0;
  group_->broadcast(buffer, options)->wait();
  unpack(buffer[0], tensors);
}

void DataParallel::barrier() {
  if (!distributed()) return;
  group_->barrier()->wait();
}

}  // namespace vitrine::training
