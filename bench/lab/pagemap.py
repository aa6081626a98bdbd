#!/usr/bin/env python3
"""bench/lab/pagemap.py PID BINARY ORDER_FILE: which pages of the binary's code are resident
(/proc/PID/pagemap, root only): inside the ordered (hot) prefix and in 64 KiB windows outside it,
with the crate of the code there. For bench/findings.md."""
import sys,struct,subprocess,bisect,collections,re
pid=int(sys.argv[1]); binary=sys.argv[2]; order=set(open(sys.argv[3]).read().split())
maps=[l.split() for l in open(f"/proc/{pid}/maps")]
text=[m for m in maps if len(m)>5 and m[1]=="r-xp" and m[5].endswith(binary.split('/')[-1])][0]
lo,hi=[int(x,16) for x in text[0].split('-')]
f=open(f"/proc/{pid}/pagemap","rb")
present=[]
for a in range(lo,hi,4096):
    f.seek(a//4096*8); v=struct.unpack("Q",f.read(8))[0]
    present.append(bool(v>>63))
syms=[]
for l in subprocess.run(["nm","-n","-S","--defined-only",binary],capture_output=True,text=True).stdout.split("\n"):
    p=l.split()
    if len(p)==4 and p[2] in "tTwW": syms.append((int(p[0],16),int(p[1],16),p[3]))
addrs=[s[0] for s in syms]
# hot extent
hot=[s for s in syms if s[2] in order]
hot_end=max(s[0]+s[1] for s in hot)
print(f"text {lo:x}-{hi:x}, hot end {hot_end:x} ({(hot_end-lo)/1048576:.2f} MiB from start)")
npres=sum(present); print("resident pages", npres, npres*4/1024, "MiB")
inhot=sum(p for i,p in enumerate(present) if lo+i*4096<hot_end); print("resident in hot prefix", inhot*4/1024, "MiB")
# windows outside hot
win=collections.Counter()
for i,p in enumerate(present):
    a=lo+i*4096
    if p and a>=hot_end: win[a//65536]+=1
print("cold 64K windows resident:", len(win))
cnt=collections.Counter()
for w in sorted(win):
    a=w*65536
    j=bisect.bisect_right(addrs,a+32768)-1
    name=syms[j][2] if j>=0 else "?"
    m=re.match(r"_ZN(\d+)",name)
    crate=name[len(m.group(0)):len(m.group(0))+int(m.group(1))] if m else name[:30]
    cnt[crate]+=1
print(cnt.most_common(30))
