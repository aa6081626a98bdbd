#!/usr/bin/env bash
# make e2e: the end-to-end scenarios (integration/e2e) on the machine's Docker engine, with the
# images of `make image`. Every container, network and volume of this run carries the label
# org.ochopod.e2e=<run>; each test removes its own when it ends (also when it fails), and this
# script removes whatever is left with the run's label on exit, for a test process that was
# killed before its guard ran.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo=${CARGO:-cargo}
run=run-$(date +%s)-$$
export OCHOPOD_E2E_RUN=$run
export OCHOPOD_BIN=${OCHOPOD_BIN:-$root/target/release/ochopod}

cleanup() {
  local filter=label=org.ochopod.e2e=$run ids
  ids=$(docker ps -aq --filter "$filter" 2>/dev/null || true)
  [ -n "$ids" ] && docker rm -f -v $ids >/dev/null
  ids=$(docker network ls -q --filter "$filter" 2>/dev/null || true)
  [ -n "$ids" ] && docker network rm $ids >/dev/null
  ids=$(docker volume ls -q --filter "$filter" 2>/dev/null || true)
  [ -n "$ids" ] && docker volume rm $ids >/dev/null
  echo "e2e: run $run cleaned up"
}
trap cleanup EXIT

# Two at a time: the scenarios start JVMs (ZooKeeper) and time failovers on 2 cores.
if $cargo nextest --version >/dev/null 2>&1; then
  $cargo nextest run -p ochopod-e2e --no-fail-fast --test-threads 2 --success-output never --failure-output final
else
  $cargo test -p ochopod-e2e --no-fail-fast -- --test-threads 2
fi
