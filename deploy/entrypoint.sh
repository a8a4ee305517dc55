#!/bin/sh
# The container's entrypoint: maps the first argument to one vitrine
# program and execs it, so the program is PID 1 and gets SIGTERM itself
# (vitrined drains on it; the trainer service ends its current step).
#
#   vitrined [ARGS]     the gRPC daemon          (default: --config /etc/vitrine/router.yaml)
#   gateway [ARGS]      the OpenAI-compatible HTTP gateway (default: --config /etc/vitrine/gateway.yaml)
#   trainer ARGS        vitrine trainer ...      (serve, submit, watch, list, get, cancel)
#   train [ARGS]        vitrine train ...        (data-parallel when WORLD_SIZE > 1)
#   prepare ARGS        vitrine prepare ...
#   vitrine ARGS        any vitrine subcommand (ask, compare, bench, ab-report, eval, info, ...)
#
# Non-goals: no config templating, no process supervision. Every program
# reads its config from /etc/vitrine (the image's copy of configs/, or the
# ConfigMap mounted over it) and takes its paths from there.
set -eu

BIN=/usr/local/bin

usage() {
  sed -n '5,11p' "$0" | sed 's/^# \{0,1\}//' >&2
}

# Ranks of a data-parallel run other than 0 connect to MASTER_ADDR at once.
# In a Kubernetes Indexed Job, rank 0's DNS name appears only once its pod
# has an address, so wait for it to resolve (within VITRINE_DIST_TIMEOUT)
# instead of failing the pod on the first lookup.
wait_for_master() {
  if [ "${WORLD_SIZE:-1}" -le 1 ] || [ -z "${MASTER_ADDR:-}" ]; then
    return 0
  fi
  limit=${VITRINE_DIST_TIMEOUT:-1800}
  waited=0
  until getent hosts "$MASTER_ADDR" >/dev/null 2>&1; do
    if [ "$waited" -ge "$limit" ]; then
      echo "entrypoint: MASTER_ADDR '$MASTER_ADDR' does not resolve after ${limit} s" >&2
      exit 1
    fi
    if [ "$waited" -eq 0 ]; then
      echo "entrypoint: rank ${RANK:-?} waiting for MASTER_ADDR '$MASTER_ADDR' to resolve" >&2
    fi
    sleep 2
    waited=$((waited + 2))
  done
}

if [ "$#" -eq 0 ]; then
  set -- vitrined
fi
command=$1
shift

case "$command" in
  vitrined)
    if [ "$#" -eq 0 ]; then set -- --config /etc/vitrine/router.yaml; fi
    exec "$BIN/vitrined" "$@"
    ;;
  gateway | vitrine-gateway)
    if [ "$#" -eq 0 ]; then set -- --config /etc/vitrine/gateway.yaml; fi
    exec "$BIN/vitrine-gateway" "$@"
    ;;
  trainer)
    exec "$BIN/vitrine" trainer "$@"
    ;;
  train)
    wait_for_master
    exec "$BIN/vitrine" train "$@"
    ;;
  prepare)
    exec "$BIN/vitrine" prepare "$@"
    ;;
  vitrine)
    exec "$BIN/vitrine" "$@"
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    echo "entrypoint: unknown command '$command'" >&2
    usage
    exit 2
    ;;
esac
