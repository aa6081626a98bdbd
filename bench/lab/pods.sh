#!/bin/bash
# usage: bench/lab/pods.sh BIN NS N SESSION [ENV...]: starts N pods of the bench's declaration against
# a ZooKeeper on 127.0.0.1:22181 (bench/lab/zk.sh), prints "pid port dir" for each; BIN may be a
# command line ("valgrind --tool=callgrind … /path/ochopod"). For bench/findings.md.
BIN=$1; NS=$2; N=$3; SESSION=$4; shift 4
for i in $(seq 1 $N); do
  d=$(mktemp -d /tmp/ochopod-lab-pod-XXXX)
  port=$((30000 + RANDOM % 20000))
  cat > $d/pod.yaml <<Y
cluster: idle
namespace: $NS
zk_session_timeout: $SESSION
model:
  damper: 0s
  grace: 10s
process:
  command: sleep 3600
  grace: 2s
files:
  - path: size.txt
    template: "{{ size }}"
Y
  (cd $d && exec env "$@" OCHOPOD_ZK=127.0.0.1:22181 PORT_8080=$port POD_DIR=$d OCHOPOD_PLATFORM_ROOT=$d $BIN run $d/pod.yaml > $d/pod.log 2>&1 & echo $! > $d/pid)
  echo "$(cat $d/pid) $port $d"
done
