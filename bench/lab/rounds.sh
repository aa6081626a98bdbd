#!/bin/bash
# usage: bench/lab/rounds.sh BIN N: starts N pods of one cluster back to back (bench/lab/pods.sh,
# default 15 s session), waits 20 s, then prints the leader's rounds from its log (pods per round,
# duration) and stops the pods. For bench/findings.md ("Scale").
set -u
BIN=$1; N=$2; ns=rounds$RANDOM
here=$(dirname "$0")
t0=$(date +%s.%N)
"$here/pods.sh" "$BIN" "$ns" "$N" 15s > /tmp/$ns.pods
t1=$(date +%s.%N)
echo "spawned $N pods in $(echo "$t1 - $t0" | bc) s"
sleep 20
for d in $(awk '{print $3}' /tmp/$ns.pods); do
  if grep -q "configuring" "$d/pod.log"; then
    echo "leader: $d"
    grep -o "configuring.*pods=[0-9]*\|configuration complete.*ms=[0-9]*\|round failed.*" "$d/pod.log" | sed 's/cluster=[^ ]* //' | awk '{print "  " $0}'
    first=$(grep -m1 -o '^[0-9T:.-]*' "$d/pod.log"); last=$(grep "configuration complete" "$d/pod.log" | tail -1 | grep -o '^[0-9T:.-]*')
    echo "  first log line $first, last round complete $last"
  fi
done
for p in $(awk '{print $1}' /tmp/$ns.pods); do kill -TERM "$p" 2>/dev/null; done
