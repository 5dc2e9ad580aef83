// What the CPU is: model name, cores, the SIMD features the kernels use, memory.
#include <cpuid.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "core/backend.hpp"
#include "cpu/paths_cpu.hpp"

namespace longattn::cpu {

bool cpu_has_f16c() {
  unsigned eax, ebx, ecx, edx;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx >> 29 & 1u) != 0;  // leaf 1: ECX bit 29
}

bool cpu_has_avx512bf16() {
  unsigned eax, ebx, ecx, edx;
  // Leaf 7, sub-leaf 1: EAX bit 5 is AVX512_BF16.
  return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax >> 5 & 1u) != 0;
}

bool cpu_has_amx() {
  static const bool ok = [] {
    unsigned eax, ebx, ecx, edx;
    // Leaf 7, sub-leaf 0: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE; leaf 1 ECX bit 27: OSXSAVE.
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) || !(edx >> 22 & 1u) || !(edx >> 24 & 1u))
      return false;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx >> 27 & 1u)) return false;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo >> 17 & 3u) == 3u;  // the OS saves XTILECFG and XTILEDATA
  }();
  return ok;
}

bool cpu_amx_granted() {
  static const bool ok = [] {
#if defined(__linux__) && defined(SYS_arch_prctl)
    // Linux hands out the tile data state (8 KiB per thread) only on request:
    // ARCH_REQ_XCOMP_PERM (0x1023) for XFEATURE_XTILEDATA (18).
    return cpu_has_amx() && syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
    return false;
#endif
  }();
  return ok;
}

}  // namespace longattn::cpu

namespace longattn::detail {

namespace {

// What does not change while the process runs, read once: a plan asks for it on every call.
longattn_device_info static_cpu_info() {
  longattn_device_info info;
  std::memset(&info, 0, sizeof info);
  info.device = LONGATTN_DEVICE_CPU;
  info.available = 1;
  info.cores = static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  std::string name = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      name = line.substr(line.find(':') + 2);
      break;
    }
  }
  std::snprintf(info.name, sizeof info.name, "%s", name.c_str());
  std::string features = std::string("kernels=") + cpu::active_isa().name;
  const char* names[] = {"amx", "avx512f", "avx512bf16", "avx2", "fma", "f16c"};
  for (const char* f : names) {
    bool has = std::strcmp(f, "amx") == 0          ? longattn::cpu::cpu_has_amx()
               : std::strcmp(f, "avx512bf16") == 0 ? longattn::cpu::cpu_has_avx512bf16()
               : std::strcmp(f, "avx512f") == 0    ? __builtin_cpu_supports("avx512f")
               : std::strcmp(f, "avx2") == 0       ? __builtin_cpu_supports("avx2")
               : std::strcmp(f, "fma") == 0        ? __builtin_cpu_supports("fma")
                                                   : longattn::cpu::cpu_has_f16c();
    if (has) features += std::string(" ") + f;
  }
  std::snprintf(info.features, sizeof info.features, "%s", features.c_str());
  long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  info.memory_total = int64_t(pages) * size;
  return info;
}

// MemAvailable (free plus reclaimable cache) is what an allocation can get without swapping. It is
// the third line of /proc/meminfo: one read(2) of the file's head, not a parse of all of it.
int64_t memory_available() {
  char buf[512];
  int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* line = std::strstr(buf, "MemAvailable:");
  return line ? std::strtoll(line + 13, nullptr, 10) * 1024 : 0;
}

// MemAvailable, read at most every 50 ms: a runtime plans once per layer per token, and the /proc
// read costs more than the rest of a plan. Memory that moves within 50 ms moves between a plan and
// its allocation as well.
int64_t memory_available_recent() {
  static std::atomic<int64_t> value{0}, read_at_ns{0};
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  const int64_t at = read_at_ns.load(std::memory_order_acquire);
  if (at != 0 && now - at < 50'000'000) return value.load(std::memory_order_relaxed);
  const int64_t v = memory_available();
  value.store(v, std::memory_order_relaxed);
  read_at_ns.store(now, std::memory_order_release);
  return v;
}

}  // namespace

void cpu_device_info(longattn_device_info* info, bool free_memory) {
  static const longattn_device_info fixed = static_cpu_info();
  *info = fixed;
  if (free_memory) info->memory_free = memory_available_recent();
}

}  // namespace longattn::detail
