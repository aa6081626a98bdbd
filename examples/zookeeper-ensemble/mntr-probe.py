#!/usr/bin/env python3
"""Leader probe for the ZooKeeper ensemble: `mntr` on every server of the cluster view (JSON on
stdin, as ochopod passes it) and one line of status. Exit non-zero with the reason when the
ensemble is not healthy: ochopod shows it as `* <reason>`."""
import json
import socket
import sys


def mntr(ip, port):
    with socket.create_connection((ip, port), timeout=3) as s:
        s.sendall(b"mntr")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return dict(line.split("\t", 1) for line in data.decode().splitlines() if "\t" in line)


view = json.load(sys.stdin)
states, leader = [], None
for pod in view["pods"]:
    try:
        m = mntr(pod["ip"], pod["ports"]["2181"])
    except OSError as e:
        sys.exit(f"pod #{pod['seq']} -> {e}")
    state = m.get("zk_server_state", "?")
    states.append(state)
    if state == "leader":
        if leader:
            sys.exit("more than one leader")
        leader = m

size = len(view["pods"])
if size == 1 and states == ["standalone"]:
    print("1 server, standalone")
    sys.exit(0)
if not leader:
    sys.exit(f"no leader ({', '.join(states)})")
synced = int(leader.get("zk_synced_followers", "0"))
if synced != size - 1:
    sys.exit(f"{synced}/{size - 1} followers synced")
print(f"{size} servers, 1 leader, {synced} synced followers")
