#!/usr/bin/env bash
# make demo: a local ZooKeeper for coordination, then three ochopod pods that each run a ZooKeeper
# server and configure themselves into one ensemble. Shows the cluster, asks each server `srvr`,
# and tears everything down (by pid) whatever happens.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${OCHOPOD_BIN:-$root/target/debug/ochopod}
example=$root/examples/zookeeper-ensemble
work=$(mktemp -d /tmp/ochopod-demo.XXXXXX)
pids=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
  say "tearing down"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  [ -n "${zk_pid:-}" ] && { kill -TERM "$zk_pid" 2>/dev/null; wait "$zk_pid" 2>/dev/null || true; }
  rm -rf "$work"
  echo "done: no process left behind"
}
trap cleanup EXIT

free_port() { # the first port from $1 upward that nothing listens on
  local p=$1
  while (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

four() { # four-letter word to 127.0.0.1:$1
  exec 3<>/dev/tcp/127.0.0.1/"$1" && printf '%s' "$2" >&3 && cat <&3; exec 3>&-
}

[ -x "$bin" ] || { echo "build first: cargo build -p ochopod (make demo does)"; exit 1; }
[ -f /usr/share/java/zookeeper.jar ] || { echo "ZooKeeper is missing: make setup"; exit 1; }

say "1. a standalone ZooKeeper for coordination (what ochopod pods register in)"
zk_port=$(free_port 22181)
mkdir -p "$work/zk/data"
cat > "$work/zk/zoo.cfg" <<CFG
tickTime=500
dataDir=$work/zk/data
clientPort=$zk_port
clientPortAddress=127.0.0.1
maxSessionTimeout=60000
4lw.commands.whitelist=*
admin.enableServer=false
CFG
java -Xmx128m -XX:+UseSerialGC -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$work/zk/zoo.cfg" > "$work/zk/log" 2>&1 &
zk_pid=$!
for _ in $(seq 1 300); do four "$zk_port" srvr 2>/dev/null | grep -q Mode: && break; sleep 0.2; done
echo "ZooKeeper serving on 127.0.0.1:$zk_port (pid $zk_pid)"

say "2. three pods from $example/pod.yaml, each with its own ports (as a container platform remaps them)"
base=$(free_port 24000)
controls=(); clients=()
for i in 1 2 3; do
  dir=$work/pod$i; mkdir -p "$dir"; cp "$example/pod.yaml" "$dir/pod.yaml"
  control=$(free_port $((base + i * 10))); client=$(free_port $((control + 1)))
  peer=$(free_port $((client + 1))); election=$(free_port $((peer + 1)))
  controls+=("$control"); clients+=("$client")
  (cd "$dir" && exec env OCHOPOD_ZK=127.0.0.1:$zk_port EXAMPLE_DIR="$example" \
     PORT_8080=$control PORT_2181=$client PORT_2888=$peer PORT_3888=$election \
     "$bin" run pod.yaml > "$dir/ochopod.log" 2>&1) &
  pids+=($!)
  echo "pod $i: control 127.0.0.1:$control, ZooKeeper client port $client (ochopod pid ${pids[-1]})"
done

export OCHOPOD_ZK=127.0.0.1:$zk_port
say "3. ochopod wait: until the 3 pods run and the leader has no configuration pending"
start=$(date +%s)
"$bin" wait demo.zookeeper --count 3 --timeout 120s

say "4. until the leader's probe (mntr on every server) reports a healthy ensemble"
until "$bin" ls demo.zookeeper --json 2>/dev/null | grep -q '"3 servers, 1 leader, 2 synced followers"'; do
  if (( $(date +%s) - start > 150 )); then
    echo "the ensemble did not become healthy within 150 s; pod logs:"; tail -n 20 "$work"/pod*/ochopod.log; exit 1
  fi
  sleep 0.5
done
echo "healthy $(( $(date +%s) - start )) s after the pods started"

say "ochopod ls: the cluster, running/total and the leader's status"
"$bin" ls
say "ochopod grep: every pod"
"$bin" grep

say "5. each ZooKeeper server, asked 'srvr' on its client port"
for p in "${clients[@]}"; do
  echo "-- 127.0.0.1:$p"; four "$p" srvr | grep -E 'Mode|Node count|Zxid'
done

say "what you saw: ochopod registered 3 pods in ZooKeeper, elected a leader, which sent every pod"
echo "the full membership; each rendered zoo.cfg and myid (ids from its stable seq) and started its"
echo "server; the leader's probe checks the ensemble with mntr and publishes the status above."
