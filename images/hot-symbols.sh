#!/usr/bin/env bash
# Writes images/ochopod/hot-symbols.txt, the functions a pod runs, for images/release.sh to place
# together at the start of the binary's code (see there why). Run it again when the list has gone
# stale (bench/results.md's idle RSS creeping up after a dependency or toolchain update: symbol
# names carry a hash of their crate's version and features, so the list then misses some).
#
# How: a release binary built by images/release.sh without symbols stripped runs under
# valgrind's callgrind (every function executed, however rarely), once as the leader and once as
# a follower of a 14-pod cluster of the bench's declaration against a local ZooKeeper: start,
# rounds (a fifteenth pod joins), /info, /metrics, /log, idle, SIGTERM; its keeper is traced too.
# The list is every executed function's symbol as the binary names it, sorted.
#
# Needs valgrind, java and Debian's zookeeper (make setup installs the latter), about 3 minutes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
out=$root/images/ochopod/hot-symbols.txt
work=$(mktemp -d /tmp/ochopod-hot-XXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 3
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

images/release.sh -C strip=none
bin=$work/ochopod
cp target/release/ochopod "$bin"

zk_port=$(( 20000 + RANDOM % 10000 ))
mkdir -p "$work/zk/data"
printf 'tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\nminSessionTimeout=1000\nmaxSessionTimeout=60000\nadmin.enableServer=false\n' \
  "$work/zk/data" "$zk_port" > "$work/zk/zoo.cfg"
java -Xmx256m -XX:+UseSerialGC -Dzookeeper.admin.enableServer=false -Dzookeeper.log.dir="$work/zk" \
  -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar org.apache.zookeeper.server.quorum.QuorumPeerMain \
  "$work/zk/zoo.cfg" > "$work/zk/log" 2>&1 &
pids+=($!)
sleep 5

vg=(valgrind --tool=callgrind --demangle=no --dump-instr=no --trace-children=yes
    '--trace-children-skip=*sleep*' "--callgrind-out-file=$work/cg.%p")
ports=()
# pod NAMESPACE [valgrind…]: starts one pod of the bench's declaration, its control port in $port.
pod() {
  local ns=$1; shift
  local d; d=$(mktemp -d "$work/pod-XXXX")
  port=$(( 30000 + RANDOM % 20000 ))
  cat > "$d/pod.yaml" <<EOF
cluster: hot
namespace: $ns
model:
  damper: 0s
process:
  command: sleep 3600
  grace: 2s
files:
  - path: size.txt
    template: "{{ size }}"
EOF
  (cd "$d" && exec env OCHOPOD_ZK=127.0.0.1:$zk_port PORT_8080=$port POD_DIR="$d" OCHOPOD_PLATFORM_ROOT="$d" \
    "$@" "$bin" run "$d/pod.yaml" > "$d/pod.log" 2>&1) &
  pids+=($!)
  ports+=("$port")
}
look() { for _ in $(seq 1 "$1"); do for p in "${ports[@]}"; do curl -s -m 2 "localhost:$p/info" >/dev/null || true; done; sleep 0.2; done; }

for role in leader follower; do
  ports=()
  first=${#pids[@]}
  # 14 pods: more than a B-tree leaf holds (11), so the code that large clusters run (node
  # splits, longer payloads) is traced too, not only a 3-pod cluster's.
  if [ $role = leader ]; then
    pod "hot$role" "${vg[@]}"; traced=${pids[-1]}; traced_port=$port; sleep 12
    for _ in $(seq 13); do pod "hot$role"; done
  else
    for _ in $(seq 13); do pod "hot$role"; done; sleep 2
    pod "hot$role" "${vg[@]}"; traced=${pids[-1]}; traced_port=$port
  fi
  sleep 15; look 20
  pod "hot$role"; sleep 5; look 10
  sleep 25
  curl -s -m 5 "localhost:$traced_port/metrics" >/dev/null || true
  curl -s -m 5 "localhost:$traced_port/log" >/dev/null || true
  kill -TERM "$traced"; sleep 12
  for p in "${pids[@]:$first}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 3
done

python3 - "$bin" "$out" "$work"/cg.* <<'EOF'
import re, subprocess, sys
binary, out, files = sys.argv[1], sys.argv[2], sys.argv[3:]
ran = set()
for f in files:
    for line in open(f, errors="replace"):
        m = re.match(r"c?fn=\(\d+\) (.+)$", line)
        if m:
            ran.add(m.group(1).strip())
nm = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
code = {p[2] for p in (l.split() for l in nm.splitlines()) if len(p) == 3 and p[1] in "tTwW"}
hot = ran & code
# glibc picks a string function's variant for the CPU at start (IFUNC): valgrind's virtual CPU
# gets other variants than the real one, so every variant of an executed one is listed.
variant = re.compile(r"^(__\w+?)_(sse|ssse|avx|evex|erms|unaligned)")
stems = {m.group(1) for m in map(variant.match, hot) if m}
hot |= {c for c in code if (m := variant.match(c)) and m.group(1) in stems}
hot = sorted(hot)
open(out, "w").write("\n".join(hot) + "\n")
print(f"{out}: {len(hot)} functions ({len(ran)} executed names, {len(ran - code)} not code of the binary)")
EOF
