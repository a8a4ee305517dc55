// Data-parallel training across processes: every process holds the whole
// model, takes its share of each optimizer step's rows, and the gradients
// are summed over a Gloo process group (libtorch's c10d) before the step, so
// every replica takes the same step.
//
// The rendezvous is torchrun's: RANK, WORLD_SIZE, MASTER_ADDR and
// MASTER_PORT in the environment, rank 0 hosting a TCPStore there. A
// Kubernetes Indexed Job sets them from the completion index and a
// headless Service. GLOO_SOCKET_IFNAME picks the network interface (as in
// PyTorch); otherwise Gloo binds the address the host name resolves to, or
// loopback when MASTER_ADDR is a loopback address. VITRINE_DIST_TIMEOUT
// (seconds, default 1800) bounds the rendezvous and every collective, so a
// rank that dies does not leave the others waiting for ever.
//
// Not goals: sharded optimizer state, overlapping communication with the
// backward pass (the adapters' gradients are a few megabytes at most).
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace c10d {
class ProcessGroupGloo;
class Store;
}  // namespace c10d

namespace vitrine::training {

struct DataParallelSettings {
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  uint16_t master_port = 29500;
  std::string interface;  // GLOO_SOCKET_IFNAME, empty = by address
  std::chrono::seconds timeout{1800};
};

// The settings the environment gives (world size 1 when WORLD_SIZE is
// unset). A malformed or inconsistent variable throws std::invalid_argument
// naming it.
DataParallelSettings data_parallel_from_environment();

enum class Reduce { kSum, kMin, kMax };

class DataParallel {
 public:
  // World size 1: no process group; every collective is the identity.
  // Otherwise joins the group (blocks until every rank has joined or the
  // timeout passes; throws std::runtime_error saying which).
  explicit DataParallel(const DataParallelSettings& settings);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int rank() const { return settings_.rank; }
  int world_size() const { return settings_.world_size; }
  bool is_main() const { return settings_.rank == 0; }
  bool distributed() const { return settings_.world_size > 1; }

  // Reduces the tensors in place across ranks (all of one dtype; they are
  // packed into one buffer, so this is one collective).
  void all_reduce_in_place(const std::vector<at::Tensor>& tensors, Reduce op = Reduce::kSum);
  // Reduces a few numbers (exact for integers below 2^53).
  std::vector<double> all_reduce(std::vector<double> values, Reduce op = Reduce::kSum);
  // Whether every rank passed the same value.
  bool agree(double value);
  // Overwrites the tensors with rank 0's.
  void broadcast_from_main(const std::vector<at::Tensor>& tensors);
  void barrier();

 private:
  DataParallelSettings settings_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

}  // namespace vitrine::training
