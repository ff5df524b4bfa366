#!/usr/bin/env bash
# The main job: the e-commerce example end to end, offline, on embedded defaults.
# Submits product landing pages, product copy and A/B test scripts; bad rows are refused at
# the door; every output is checked; a demo operator approves; the site is published and
# served. Runs in a fresh copy of examples/ecommerce (SHIPYARD_DEMO_DIR, default .demo/).
#   --no-serve   stop after publishing instead of serving the site
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

serve=1
[ "${1:-}" = "--no-serve" ] && serve=0
work=${SHIPYARD_DEMO_DIR:-.demo}
rm -rf "$work"
mkdir -p "$work"
cp -r examples/ecommerce/. "$work/"
repo=$PWD
export PATH="$repo/.venv/bin:$PATH"
cd "$work"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
partial() { [ "$1" = 0 ] || [ "$1" = 3 ]; }  # 3: some rows rejected, the rest submitted

step "shipyard init"
shipyard init
step "submit: landing pages, product copy and A/B tests (two rows are bad on purpose)"
rc=0; shipyard submit landing-page --batch products.csv --as shop-owner || rc=$?; partial $rc
rc=0; shipyard submit product-copy --batch products.csv --as shop-owner || rc=$?; partial $rc
shipyard submit ab-test --batch experiments.jsonl --as shop-owner
step "worker: generate, check in the sandbox, register artifacts, stop at the gate"
shipyard worker --until-idle
shipyard approvals
step "approve as demo-operator (recorded as such)"
shipyard approve --all --as demo-operator --reason "reviewed in the demo"
step "worker: release the approved artifacts to the storefront site"
shipyard worker --until-idle
shipyard status
first=$(shipyard list --state published --job landing-page --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
step "one task's whole story: shipyard show $first"
shipyard show "$first"
step "where it came from, and where it went: shipyard lineage $first"
shipyard lineage "$first"
step "its trace: stages, model calls, checks and tool calls (shipyard trace)"
shipyard trace "$first"
shipyard artifacts --job ab-test
step "a price change: the new copy recalls what was approved before (memory)"
changed=$(shipyard submit product-copy --batch price-change.csv --as shop-owner --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["submitted"][0])')
shipyard worker --until-idle
shipyard show "$changed" | sed -n '/recalled/,/checks/p'
step "the operating figures, from the records (shipyard stats)"
shipyard stats
step "every artifact version: signature, file digests and check reports"
shipyard artifacts verify --all | tail -n 1
step "the audit log: every decision and effect, hash-chained"
shipyard audit verify
echo
echo "Explore: cd $work && $repo/.venv/bin/shipyard list   (or show TASK, artifacts, rollback)"
if [ $serve = 1 ]; then
    step "serving the storefront"
    exec shipyard serve ${PORT:+--port "$PORT"}
fi
