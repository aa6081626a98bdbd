#!/bin/bash
# usage: bench/lab/round-cpu.sh BIN NS [N]: N pods (default 200) of one cluster started by pods.sh, then three
# /reconfigure rounds of the settled cluster: each round's duration and the CPU ticks (1/100 s) of all pods and
# of the leader, from /proc. For bench/findings.md ("Rounds of a large cluster").
BIN=$1; NS=$2; N=${3:-200}

here=$(dirname "$0")
bash "$here/pods.sh" $BIN $NS $N 15s > /tmp/$NS.pods
sleep 15
L=$(for d in $(awk '{print $3}' /tmp/$NS.pods); do grep -q configuring $d/pod.log && echo $d; done)
lport=$(grep $L /tmp/$NS.pods | awk '{print $2}'); lp=$(cat $L/pid)
echo "leader $L; rounds during formation: $(grep -c 'configuration complete' $L/pod.log)"
grep -o "configuring.*pods=[0-9]*\|configuration complete.*ms=[0-9]*" $L/pod.log | grep -o "pods=[0-9]*\|ms=[0-9]*" | paste -sd' ' | head -c 2000; echo
cpu() { local t=0; for p in "$@"; do read -a f < /proc/$p/stat 2>/dev/null && t=$((t + ${f[13]} + ${f[14]})); done; echo $t; }
allp=$(awk '{print $1}' /tmp/$NS.pods)
for i in 1 2 3; do
a1=$(cpu $allp); l1=$(cpu $lp)
curl -s -XPOST localhost:$lport/reconfigure >/dev/null
sleep 2.5
a2=$(cpu $allp); l2=$(cpu $lp)
echo "round $i: all pods ticks $((a2-a1)) (leader $((l2-l1))) $(grep 'configuration complete' $L/pod.log | tail -1 | grep -o 'ms=.*')"
done
grep VmRSS /proc/$lp/status
for p in $allp; do kill -TERM $p 2>/dev/null; done
sleep 3; for d in $(awk '{print $3}' /tmp/$NS.pods); do rm -rf "$d"; done
