#!/usr/bin/env python3
"""A stand-in for a ZooKeeper client such as a Kafka broker: reads `zookeeper.connect` from the
properties file ochopod rendered and reports every few seconds what each server says it is."""
import socket
import sys
import time

props = dict(l.strip().split("=", 1) for l in open(sys.argv[1]) if "=" in l)
servers = [s for s in props["zookeeper.connect"].split(",") if s]
print(f"broker {props.get('broker.id')} using zookeeper {','.join(servers)}", flush=True)
while True:
    modes = []
    for s in servers:
        host, port = s.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=2) as c:
                c.sendall(b"srvr")
                out = c.makefile().read()
            modes.append(next((l.split(": ")[1] for l in out.splitlines() if l.startswith("Mode")), "?"))
        except OSError as e:
            modes.append(f"unreachable ({e.strerror})")
    print(f"{len(servers)} servers: {', '.join(modes)}", flush=True)
    time.sleep(5)
