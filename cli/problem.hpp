// One attention problem for `check` and `bench`: seeded random inputs in the requested dtype on
// the requested device, outputs with guard bytes behind them, and (for `check`) float32 copies of
// the exact stored inputs so the float64 reference sees what the path under test saw.
#pragma once

#include <cstdint>
#include <vector>

#include "cli.hpp"
#include "longattn/longattn.h"
#include "tensor_util.hpp"

namespace longattn::cli {

// Memory on the CPU (64-byte aligned) or on the current CUDA device.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(int32_t device, int64_t bytes);
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  ~DeviceBuffer();
  void* data() const { return data_; }
  int64_t bytes() const { return bytes_; }
  void upload(const void* host, int64_t offset, int64_t bytes);
  void download(void* host, int64_t offset, int64_t bytes) const;
  void fill(uint8_t value, int64_t offset, int64_t bytes);

 private:
  int32_t device_ = LONGATTN_DEVICE_CPU;
  void* data_ = nullptr;
  int64_t bytes_ = 0;
};

// Waits for queued device work (CUDA runs may be asynchronous); nothing on the CPU.
void device_synchronize(int32_t device);

class Problem {
 public:
  // Throws RunError if the tensors cannot fit in memory or the device cannot be used.
  Problem(const ProblemOptions& opt, bool keep_reference_inputs);

  const ProblemOptions& options() const { return opt_; }
  longattn_args args() const;  // pointing at this problem's device buffers
  // The same problem in float32 on the CPU, over the float copies (keep_reference_inputs),
  // writing into `o` and `lse`.
  longattn_args reference_args(std::vector<float>* o, std::vector<float>* lse) const;

  // Fills O and LSE with NaN bytes (so anything not written shows up) and their guards with a
  // pattern (so anything written past the end shows up).
  void poison_outputs();
  bool guards_intact() const;
  std::vector<float> output() const;  // O as float32
  std::vector<float> lse() const;
  std::vector<uint8_t> output_bytes() const;  // O and LSE exactly as stored
  uint64_t input_hash() const;                // of Q, K, V and sinks as stored on the device

 private:
  ProblemOptions opt_;
  int64_t q_count_, k_count_, v_count_, o_count_, lse_count_;
  DeviceBuffer q_, k_, v_, o_, lse_, sinks_;
  std::vector<float> q32_, k32_, v32_, sinks32_;
};

// Throws RunError with the library's reason when opt.device cannot run anything at all (e.g. a
// build without CUDA), before any large allocation.
void require_device(const ProblemOptions& opt);

}  // namespace longattn::cli
