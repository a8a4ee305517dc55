#!/usr/bin/env bash
# Install every Debian package vitrine needs to build, test and run.
# Idempotent: packages already present are left alone, and apt is only asked
# when something is missing. Needs root (or sudo) on Debian 12.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git
  # foundation libraries (fixed in DESIGN.md)
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libyaml-cpp-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libsimdjson-dev libxxhash-dev zlib1g-dev libsqlite3-dev sqlite3
  # models/: libtorch on CPU with a threaded OpenBLAS behind libblas.so.3
  libtorch-dev libopenblas0-pthread libsentencepiece-dev libpcre2-dev
  # trainer: data-parallel training on c10d's Gloo process group (its headers)
  libgloo-dev
  # router/, gateway/: gRPC and Protobuf
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  # router/: TLS key and certificate checks; gateway/: cpp-httplib's TLS
  libssl-dev
  # router/: the daemon's Prometheus endpoint
  libcpp-httplib-dev
  # benchmarks: the peer pipeline runs on Debian's Python
  python3 python3-pandas python3-numpy time
  # deploy/: kubectl renders the Kubernetes manifests (tests/deploy/check_manifests.py)
  kubernetes-client python3-yaml
  # gateway/web: the page's browser test drives headless Chromium from Node
  # (tests/gateway/web_page_test.mjs; `npm ci` there fetches puppeteer-core)
  chromium npm
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  # Any kubectl will do; another package's (e.g. Google's `kubectl`) conflicts with this one.
  if [[ $pkg == kubernetes-client ]] && command -v kubectl >/dev/null; then continue; fi
  # Any npm will do; a nodejs package from elsewhere (e.g. NodeSource's) bundles one and conflicts with Debian's.
  if [[ $pkg == npm ]] && command -v npm >/dev/null; then continue; fi
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
