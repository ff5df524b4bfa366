#!/usr/bin/env bash
# The main job: the e-commerce example end to end, offline, on embedded defaults.
# Submits product landing pages, product copy and A/B test scripts; bad rows are refused at
# the door; every output is checked; a demo operator approves; each page is released by
# canary through the gateway while simulated shoppers browse; the site is served.
# People are authenticated: the login running the demo is demo-operator (os_users), and
# shop-owner submits with a personal token (SHIPYARD_TOKEN) that demo-operator makes.
# Runs in a fresh copy of examples/ecommerce (SHIPYARD_DEMO_DIR, default .demo/).
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
step "people: this login ($(id -un)) is demo-operator; shop-owner gets a personal token"
python3 - "$(id -un)" <<'PY'
import json, pathlib, sys
config = pathlib.Path("shipyard.toml")
text = config.read_text()
table = text.index("[people.demo-operator]")
mapped = text[table:].replace("os_users = []", f"os_users = [{json.dumps(sys.argv[1])}]", 1)
config.write_text(text[:table] + mapped)
PY
owner_token=$(shipyard tokens create shop-owner --role operator)
step "submit: landing pages, product copy and A/B tests (two rows are bad on purpose)"
owner() { SHIPYARD_TOKEN=$owner_token shipyard "$@"; }
rc=0; owner submit landing-page --batch products.csv --as shop-owner || rc=$?; partial $rc
rc=0; owner submit product-copy --batch products.csv --as shop-owner || rc=$?; partial $rc
owner submit ab-test --batch experiments.jsonl --as shop-owner
step "worker: generate, check in the sandbox, register artifacts, stop at the gate"
shipyard worker --until-idle
shipyard approvals
step "the gateway (shipyard serve) in the background, and shoppers browsing through it"
shipyard serve --port 0 --admin-port 0 >serve.log 2>&1 &
serve_pid=$!
visitors_pid=
trap 'kill $serve_pid $visitors_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s .shipyard/gateway.json ] && break; sleep 0.1; done
cat serve.log
# The storefront's URL; the API and console answer on an origin of their own (admin_url).
url=$(python3 -c 'import json; print(json.load(open(".shipyard/gateway.json"))["url"])')
admin=$(python3 -c 'import json; print(json.load(open(".shipyard/gateway.json"))["admin_url"])')
echo "the console (while the demo runs): $admin/console/"
python3 "$repo/scripts/visitors.py" "$url" products.csv --seconds 300 --rate 300 \
    --focus .shipyard/sites/storefront-site/routes.json &
visitors_pid=$!
step "approve the landing pages as demo-operator (recorded as such)"
pages=$(shipyard list --state waiting_approval --job landing-page --json | python3 -c 'import json,sys; print(" ".join(t["id"] for t in json.load(sys.stdin)))')
# shellcheck disable=SC2086
shipyard approve $pages --as demo-operator --reason "reviewed in the demo"
step "worker: canary releases (20% -> 50% -> 100% of each page's visitors, health-checked)"
shipyard worker --until-idle
kill -TERM $visitors_pid; wait $visitors_pid || true
step "the rollouts: stages, both versions' numbers, verdicts (shipyard releases)"
shipyard releases --limit 6
first=$(shipyard list --state published --job landing-page --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
shipyard releases "$first"
step "approve the copy and A/B tests; they are released the same way"
shipyard approve --all --as demo-operator --reason "reviewed in the demo"
shipyard worker --until-idle
step "one task's whole story: shipyard show $first"
shipyard show "$first"
step "where it came from, and where it went: shipyard lineage $first"
shipyard lineage "$first"
step "its trace: stages, model calls, checks and tool calls (shipyard trace)"
shipyard trace "$first"
shipyard artifacts --job ab-test
step "a price change: the new copy recalls what was approved before (memory)"
changed=$(owner submit product-copy --batch price-change.csv --as shop-owner --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["submitted"][0])')
shipyard worker --until-idle
shipyard show "$changed" | sed -n '/recalled/,/checks/p'
step "a repository change: goal -> diff -> tests in the sandbox -> approval -> branch (examples/repo)"
# The small inventory repository becomes a git repository; the model's replies were recorded
# (examples/repo/replies), so this runs offline. This login is its developer; the reviewer
# approves with a personal token (the submitter never approves their own change).
mkdir -p repo-change && cp -r "$repo/examples/repo/." repo-change/
git -C repo-change/inventory init -q -b main
git -C repo-change/inventory add -A
git -C repo-change/inventory -c user.name=Shipyard -c user.email=shipyard@localhost \
    commit -qm "inventory: stock levels and reservations"
python3 - "$(id -un)" <<'PY'
import json, pathlib, sys
config = pathlib.Path("repo-change/shipyard.toml")
text = config.read_text()
table = text.index("[people.developer]")
mapped = text[table:].replace("os_users = []", f"os_users = [{json.dumps(sys.argv[1])}]", 1)
config.write_text(text[:table] + mapped)
PY
inventory() { shipyard -C repo-change "$@"; }
inventory init >/dev/null
reviewer_token=$(inventory tokens create reviewer --role approver)
goal="Fix Stock.reserve: it lets an order reserve more units than are free, so stock goes negative. Refuse it with OutOfStock."
change=$(inventory change inventory "$goal" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["task"])')
echo "shipyard change inventory \"$goal\"  ->  $change"
inventory worker --until-idle
inventory show "$change"
SHIPYARD_TOKEN=$reviewer_token inventory approve "$change" --as reviewer --reason "reviewed in the demo"
inventory worker --until-idle
inventory show "$change" | sed -n 1p  # sed reads it all: head would end the pipe early (pipefail)
git -C repo-change/inventory log -1 --stat --format='%h %s%n%n%b' "shipyard/$change"
step "the operating figures, from the records (shipyard stats)"
shipyard stats
step "every artifact version: signature, file digests and check reports"
shipyard artifacts verify --all | tail -n 1
step "the audit log: every decision and effect, hash-chained"
shipyard audit verify
echo
echo "Explore: cd $work && $repo/.venv/bin/shipyard list   (or show TASK, artifacts, rollback)"
kill $serve_pid 2>/dev/null || true
wait $serve_pid 2>/dev/null || true
trap - EXIT
if [ $serve = 1 ]; then
    step "serving the storefront"
    exec shipyard serve ${PORT:+--port "$PORT"}
fi
