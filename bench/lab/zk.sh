#!/bin/bash
# usage: bench/lab/zk.sh DIR: starts a standalone ZooKeeper (Debian's, as the harness runs it) on
# 127.0.0.1:22181 with its data in DIR, for the hand measurements of bench/findings.md.
set -eu
dir=$1; mkdir -p "$dir/data"
cat > "$dir/zoo.cfg" <<C
tickTime=500
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=22181
clientPortAddress=127.0.0.1
minSessionTimeout=1000
maxSessionTimeout=60000
4lw.commands.whitelist=*
admin.enableServer=false
maxClientCnxns=0
C
setsid java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k -Dzookeeper.admin.enableServer=false \
  -Dzookeeper.log.dir="$dir" -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" > "$dir/log" 2>&1 &
echo $!
