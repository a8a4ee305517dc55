#!/usr/bin/env bash
# Sets up the machine, builds vitrine and runs every test (CTest), then the
# suites without libtorch again under ASan + UBSan (scripts/test_asan.sh).
# Usage: scripts/test.sh   (BUILD_DIR=build by default)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

bash scripts/setup.sh
# ccache (when installed) hits across checkouts in other folders: paths are
# taken relative to the tree, and precompiled headers are cacheable.
export CCACHE_BASEDIR="$PWD" CCACHE_SLOPPINESS=pch_defines,time_macros
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" --parallel "$(nproc)"
# The web page's browser test drives Debian's Chromium with puppeteer-core
# (npm registry, pinned by tests/gateway/package-lock.json).
npm ci --prefix tests/gateway --no-audit --no-fund --loglevel=error
export OMP_WAIT_POLICY=PASSIVE
main_status=0
ctest --test-dir "$BUILD_DIR" --output-on-failure --parallel "$(nproc)" --timeout 600 \
  2>&1 | tee "$BUILD_DIR/ctest.log" || main_status=$?
# The suites without libtorch again under ASan + UBSan (a few minutes).
asan_status=0
bash scripts/test_asan.sh || asan_status=$?
echo "sanitizer suites: $([[ $asan_status == 0 ]] && echo passed || echo FAILED)"
# CI reads the closing summary line: the main suite's, repeated last.
grep -E '^[0-9]+% tests passed|^Total Test time' "$BUILD_DIR/ctest.log" || true
((main_status == 0 && asan_status == 0))
