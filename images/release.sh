#!/usr/bin/env bash
# The release `ochopod` binary that pods run (`make image` puts it in ochopod:latest, `make bench`
# measures it): the release profile of Cargo.toml, plus three link-time choices that only the
# final binary needs, passed to its crate alone so no dependency is rebuilt for them:
#
#   -C target-feature=+crt-static   glibc linked in: no ld.so, libc.so.6, libm, libgcc_s mapped
#                                   (1.5 MiB of an idle pod's RSS), and the image needs no
#                                   libraries. glibc 2.34+ has its `files` and `dns` NSS modules
#                                   built in, so host names still resolve without libnss_*.so.
#   -C relocation-model=static      a non-PIE executable: no 0.5 MB of relocations to apply at
#                                   start, and the constants they pointed into stay clean,
#                                   shared page-cache pages instead of private copies (0.4 MiB
#                                   of RSS and of private memory per pod).
#   --symbol-ordering-file          (lld, Rust's default linker on x86_64 Linux since 1.90) the
#                                   functions a pod runs, from start through rounds, idle and
#                                   shutdown, placed together at the start of .text: the kernel
#                                   maps 64 KiB around every page fault of the binary, so code
#                                   touched here and there keeps most of the binary resident;
#                                   packed, a pod keeps about its working set. The list is
#                                   images/ochopod/hot-symbols.txt, made by images/hot-symbols.sh,
#                                   matched to the objects' symbols by images/link-ordered.sh (a
#                                   dependency update renames symbols; a name it cannot match is
#                                   skipped: a stale list costs memory, never correctness).
#
# Measured before and after each, with the commands, in bench/findings.md. `cargo build
# --release` alone still builds a working binary, only a heavier one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo=${CARGO:-cargo}
order=$root/images/ochopod/hot-symbols.txt
flags=(-C target-feature=+crt-static -C relocation-model=static)
if [ -s "$order" ]; then
  # The list's names are matched to the objects' symbols at link time (images/link-ordered.sh).
  flags+=(-C "linker=$root/images/link-ordered.sh"
          -C "link-arg=--ochopod-hot-symbols=$order:$(sha256sum < "$order" | cut -c1-16)")
fi
$cargo rustc --release -p ochopod --bin ochopod -- "${flags[@]}" "$@"
