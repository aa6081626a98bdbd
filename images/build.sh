#!/usr/bin/env bash
# make image: every image the examples and `make e2e` use, built here from nothing (no registry
# is assumed, and no network inside a build):
#
#   ochopod-base:<hash>   Debian (debootstrap minbase + images/base/packages), also :latest
#   ochopod:latest        the release binary (static, images/release.sh), CA certificates, a static shell
#   ochopod-zookeeper     examples/zookeeper-ensemble/Dockerfile   } each example's own
#   ochopod-watcher       examples/dependent/Dockerfile            } Dockerfile, with the
#   ochopod-sidecar       examples/sidecar/Dockerfile              } example's folder as context
#   ochopod-portal        examples/portal/Dockerfile               } (the portal: FROM ochopod:latest)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$root/target/images
cargo=${CARGO:-cargo}
# The engine may be older than BuildKit's client (no buildx here): the classic builder is
# enough for these Dockerfiles, and the same everywhere.
export DOCKER_BUILDKIT=0
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
t0=$(date +%s)
step() { printf '== %s (%d s)\n' "$*" $(( $(date +%s) - t0 )); }

if ! docker info >/dev/null 2>&1; then
  echo "make image needs a running Docker engine that this user may use (docker info failed)." >&2
  echo "install it with: $SUDO apt-get install docker.io && $SUDO systemctl start docker" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  step "installing debootstrap"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
fi

step "base image"
base=$(images/base/build.sh "$work")

step "release binary"
# The lean build pods run (static, non-PIE, hot code packed; see images/release.sh).
CARGO=$cargo images/release.sh
mkdir -p "$work/ochopod"
cp target/release/ochopod "$work/ochopod/ochopod"

label=(--label org.ochopod.image=1)
# Quiet when it works (the classic builder warns that it is deprecated on every build); the
# whole output when it does not.
build() {
  local out
  if ! out=$(docker build -q "${label[@]}" "$@" 2>&1); then
    echo "$out" >&2
    return 1
  fi
}
step "ochopod:latest"
build --build-arg BASE="$base" -t ochopod:latest -f images/ochopod/Dockerfile "$work/ochopod"

# The examples do not depend on each other: built side by side.
pids=()
for pair in zookeeper-ensemble:ochopod-zookeeper dependent:ochopod-watcher sidecar:ochopod-sidecar; do
  dir=${pair%%:*} name=${pair#*:}
  step "$name:latest from examples/$dir/Dockerfile"
  build --build-arg BASE="$base" --build-arg OCHOPOD=ochopod:latest -t "$name:latest" "examples/$dir" &
  pids+=($!)
done
# The portal is ochopod:latest with another entrypoint: no base, no build argument but the image.
step "ochopod-portal:latest from examples/portal/Dockerfile"
build --build-arg OCHOPOD=ochopod:latest -t ochopod-portal:latest examples/portal &
pids+=($!)
for pid in "${pids[@]}"; do wait "$pid"; done
# Rebuilds leave the previous images untagged: drop ours.
docker image prune -f --filter label=org.ochopod.image=1 >/dev/null
step "done"
docker images --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E '^  ochopod' || true
