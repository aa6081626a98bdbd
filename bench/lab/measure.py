#!/usr/bin/env python3
"""bench/lab/measure.py WINDOW PID...: for each pod, RSS/PSS/USS (smaps_rollup) and each thread's
wake-ups (voluntary and involuntary context switches) and CPU (schedstat) over WINDOW seconds;
then the first pod's resident memory by mapping (smaps). For bench/findings.md."""
import sys, os, time, re, collections
W=float(sys.argv[1]); pids=[int(p) for p in sys.argv[2:]]
def threads(pid):
    out={}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            name=open(f"/proc/{pid}/task/{t}/comm").read().strip()
            st=open(f"/proc/{pid}/task/{t}/status").read()
            v=int(re.search(r"voluntary_ctxt_switches:\s+(\d+)",st).group(1))
            nv=int(re.search(r"nonvoluntary_ctxt_switches:\s+(\d+)",st).group(1))
            ns=int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0])
            out[t]=(name,v,nv,ns)
        except Exception: pass
    return out
before={p:threads(p) for p in pids}
time.sleep(W)
for p in pids:
    after=threads(p)
    tot=0; rows=[]
    for t,(name,v,nv,ns) in after.items():
        b=before[p].get(t,(name,0,0,0))
        rows.append((name,v-b[1],nv-b[2],(ns-b[3])/1e6)); tot+=ns-b[3]
    roll={}
    for l in open(f"/proc/{p}/smaps_rollup"):
        m=re.match(r"(\w+):\s+(\d+) kB",l)
        if m: roll[m.group(1)]=int(m.group(2))
    print(f"pid {p}: RSS {roll['Rss']/1024:.2f} MiB PSS {roll['Pss']/1024:.2f} USS {(roll['Private_Clean']+roll['Private_Dirty'])/1024:.2f} Anon {roll['Anonymous']/1024:.2f} CPU {100*tot/1e9/W:.4f}%")
    for r in sorted(rows): print(f"   {r[0]:<22} wake {r[1]:>4} invol {r[2]:>4} cpu {r[3]:8.2f} ms")
# smaps by mapping for the first pid
p=pids[0]
cur=None; agg=collections.OrderedDict()
for l in open(f"/proc/{p}/smaps"):
    m=re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)",l)
    if m:
        name=m.group(4) or "[anon]"; name=os.path.basename(name) if name.startswith("/") else name
        cur=(name,m.group(3)); agg.setdefault(cur,collections.Counter())
        continue
    m=re.match(r"(\w+):\s+(\d+) kB",l)
    if m and cur: agg[cur][m.group(1)]+=int(m.group(2))
print(f"smaps of {p}: mapping perms size rss pss")
for (n,perm),c in agg.items():
    if c["Rss"]>=16: print(f"   {n:<28} {perm} {c['Size']:>7} {c['Rss']:>6} {c['Pss']:>6}")
