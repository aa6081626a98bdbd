#!/usr/bin/env bash
# Validates the Kubernetes objects `ochopod deploy --platform kubernetes --dry-run` generates
# against the official JSON schemas (strict: an unknown property fails), for several Kubernetes
# versions, offline: the schemas ship inside PyPI's kubernetes-validate, installed into a venv
# under target/ on first use. A deliberately broken copy must fail (the check can fail).
#
#   crates/ochopod-platform/check-schema.sh [path/to/ochopod]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/target/debug/ochopod}
venv=$root/target/kubernetes-validate
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate==1.37.0
fi
"$bin" deploy "$root/examples/zookeeper-ensemble/pod.yaml" --image ochopod-zookeeper:latest -n 3 \
  --platform kubernetes --dry-run -e OCHOPOD_ZK=zk:2181 >"$work/list.json"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
items = json.load(open(f"{work}/list.json"))["items"]
for i, o in enumerate(items):
    json.dump(o, open(f"{work}/{i}-{o['kind'].lower()}.json", "w"))
o = items[2]
o["spec"]["template"]["spec"]["containers"][0]["envv"] = []
json.dump(o, open(f"{work}/broken.json", "w"))
PY
for v in 1.33.0 1.35.0 1.37.0; do
  "$venv/bin/kubernetes-validate" --strict -k "$v" "$work"/[0-9]-*.json
done
if "$venv/bin/kubernetes-validate" --strict -k 1.35.0 "$work/broken.json" >/dev/null 2>&1; then
  echo "the broken StatefulSet passed: the check checks nothing" >&2
  exit 1
fi
echo "schema check passed (and a StatefulSet with an unknown field was refused)"
