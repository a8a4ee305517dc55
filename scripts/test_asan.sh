#!/usr/bin/env bash
# Builds the test suites that do not load libtorch (common, catalog, dataset)
# with AddressSanitizer + UndefinedBehaviorSanitizer (GCC, VITRINE_SANITIZE)
# into build-asan/ and runs them with CTest; any sanitizer report fails the
# test that triggered it. Run by scripts/test.sh after the main suite.
# Usage: scripts/test_asan.sh   (ASAN_BUILD_DIR=build-asan by default)
set -euo pipefail
cd "$(dirname "$0")/.."
ASAN_BUILD_DIR=${ASAN_BUILD_DIR:-build-asan}
SUITES=(common catalog dataset)

# Leak detection stays on; UBSan reports abort with a stack trace.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cmake -S . -B "$ASAN_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVITRINE_SANITIZE=ON
cmake --build "$ASAN_BUILD_DIR" --parallel "$(nproc)" --target "${SUITES[@]/%/_tests}"
labels=$(IFS='|'; echo "${SUITES[*]}")
ctest --test-dir "$ASAN_BUILD_DIR" --output-on-failure --parallel "$(nproc)" --timeout 600 \
  -L "^(${labels})\$"
