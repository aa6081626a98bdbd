#!/usr/bin/env bash
# rustc's linker for the pod binary (images/release.sh passes `-C linker=` this script and the list
# as `-C link-arg=--ochopod-hot-symbols=<file>:<sha256>`, the hash so that cargo links again when
# the list changes): runs `cc` as rustc would, with lld's `--symbol-ordering-file` made from the
# list (images/ochopod/hot-symbols.txt) for the objects being linked.
#
# Why a wrapper and not the list itself: a Rust symbol ends in a hash of its crate's metadata,
# which changes with any dependency's version or features (a Cargo.lock update renames most of
# the workspace's symbols). So the names of the list are matched against the objects' symbols
# exactly first, and otherwise by the name without its hash, when that name is not ambiguous (a
# generic function's instances share it: those are left out rather than all packed). Other names
# (C functions of glibc and ring, in archives) go to lld as they are. Unmatched names are
# skipped: a stale list costs memory, never correctness, but it can cost all the gain (a list a
# third of whose names were gone left the pod as heavy as with none: bench/findings.md), so run
# images/hot-symbols.sh again after a dependency update. With OCHOPOD_LINK_LOG=<file> the counts
# (found, renamed, Rust names gone) and the first gone names are appended there.
set -euo pipefail
[ -n "${OCHOPOD_LINK_LOG:-}" ] && exec 2>>"$OCHOPOD_LINK_LOG"
list=
args=()
objects=()
for arg in "$@"; do
  case $arg in
    --ochopod-hot-symbols=*) list=${arg#--ochopod-hot-symbols=}; list=${list%:*}; continue ;;
    @*) while IFS= read -r line; do case $line in *.o) objects+=("$line") ;; esac; done < "${arg#@}" ;;
    *.o) objects+=("$arg") ;;
  esac
  args+=("$arg")
done
if [ -z "$list" ] || [ ! -s "$list" ]; then
  exec cc "${args[@]}"
fi
order=$(mktemp /tmp/ochopod-order-XXXXXX)
trap 'rm -f "$order"' EXIT
nm --defined-only "${objects[@]}" 2>/dev/null | python3 -c '
import re, sys
hot = [l.strip() for l in open(sys.argv[1]) if l.strip()]
defined = {p[2] for p in (l.split() for l in sys.stdin) if len(p) == 3 and p[1] in "tTwW"}
bare = lambda s: re.sub(r"17h[0-9a-f]{16}E$", "E", s)
by_bare = {}
for s in defined:
    by_bare.setdefault(bare(s), []).append(s)
out, exact, renamed, gone = [], 0, 0, []
for name in hot:
    if name in defined:
        out.append(name); exact += 1
    else:
        same = by_bare.get(bare(name), [])
        if len(same) == 1:
            out.append(same[0]); renamed += 1
        else:
            # Not a Rust symbol of these objects: C code from an archive (glibc, ring) is
            # found by lld itself; a name nothing defines any more is ignored by lld.
            out.append(name)
            if name.startswith(("_ZN", "_R")):
                gone.append(name)
sys.stdout.write("\n".join(out) + "\n")
print(f"link-ordered: {len(hot)} hot symbols: {exact} found, {renamed} renamed, {len(gone)} gone", file=sys.stderr)
for name in gone[:20]:
    print(f"link-ordered: gone: {name}", file=sys.stderr)
' "$list" > "$order"
cc "${args[@]}" -Wl,--symbol-ordering-file="$order" -Wl,--no-warn-symbol-ordering
