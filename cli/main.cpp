// The `longattn` command-line tool: info, check, bench, prefill. Hand-written argument parsing
// keeps it free of dependencies beyond the library itself.
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "cli.hpp"

namespace {

constexpr const char* kUsage =
    "usage: longattn <command> [flags]\n"
    "\n"
    "commands:\n"
    "  info    version, devices, SIMD features, supported head dims per path\n"
    "  check   run a path and compare it with the float64 reference (exit 1 on mismatch)\n"
    "  bench   time the paths: median ms, GFLOPS, % of the measured FMA peak, memory\n"
    "  prefill prefill a long prompt through a model's attention layers in chunks under a memory\n"
    "          budget, fused vs unfused: per-chunk time and memory, tokens/s, peak memory\n"
    "\n"
    "'longattn <command> --help' lists a command's flags; 'longattn --version' the version.\n"
    "Exit status: 0 success, 1 library error or failed check, 2 bad command line.\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace longattn::cli;
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  std::string command = argv[1];
  if (command == "help" && argc > 2) {  // "longattn help check" = "longattn check --help"
    char help_flag[] = "--help";
    char* help_argv[] = {argv[0], argv[2], help_flag};
    argc = 3;
    argv = help_argv;
    command = argv[1];
  } else if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (command == "--version") {
    std::printf("longattn %s\n", longattn_version());
    return kExitOk;
  }
  try {
    if (command == "info") return run_info(argc, argv);
    if (command == "check") return run_check(argc, argv);
    if (command == "bench") return run_bench(argc, argv);
    if (command == "prefill") return run_prefill(argc, argv);
    std::fprintf(stderr,
                 "longattn: error: unknown command '%s'; commands: info, check, bench, prefill\n",
                 command.c_str());
    return kExitUsage;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "longattn %s: error: %s\nrun 'longattn %s --help' for the flags\n",
                 command.c_str(), e.what(), command.c_str());
    return kExitUsage;
  } catch (const RunError& e) {
    std::fprintf(stderr, "longattn %s: %s\n", command.c_str(), e.what());
    return kExitFailure;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "longattn %s: out of host memory; choose a smaller shape\n",
                 command.c_str());
    return kExitFailure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "longattn %s: internal error: %s\n", command.c_str(), e.what());
    return kExitFailure;
  }
}
