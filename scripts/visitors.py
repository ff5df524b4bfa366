"""Simulated shoppers for the demo: they browse the storefront through `shipyard serve` so
canary releases have real traffic to be measured on.

    python scripts/visitors.py URL products.csv [--seconds N] [--rate R] [--focus ROUTES]

Each of a few hundred visitors keeps one id (X-Shipyard-Client), so the gateway keeps them
on one version of a page. With --focus (a target's routes.json), most visitors go to the
pages being released, as shoppers do to new products. Stops after --seconds or on SIGTERM /
Ctrl-C, and prints what the visitors saw.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path


def slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("products", type=Path)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--rate", type=float, default=150, help="requests per second")
    parser.add_argument("--focus", type=Path, help="routes.json: favour pages being released")
    args = parser.parse_args()
    with args.products.open(newline="") as handle:
        skus = [slug(row["sku"]) for row in csv.DictReader(handle) if row.get("sku")]
    pages = [f"/products/{s}/" for s in skus] * 7 + [f"/copy/{s}/copy.md" for s in skus] * 2
    pages += ["/"] * len(skus)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    baking: list[str] = []

    def watch_routes() -> None:
        while not stop.wait(0.5):
            try:
                baking[:] = list(json.loads(args.focus.read_text()))
            except (OSError, ValueError):
                baking[:] = []

    def browse(seed: int) -> None:
        rng = random.Random(seed)
        visitors = [f"shopper-{seed}-{n}" for n in range(150)]
        deadline = time.monotonic() + args.seconds
        while not stop.is_set() and time.monotonic() < deadline:
            new = list(baking)
            page = rng.choice(new) if new and rng.random() < 0.9 else rng.choice(pages)
            request = urllib.request.Request(
                args.url.rstrip("/") + page,
                headers={"X-Shipyard-Client": rng.choice(visitors)},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as reply:
                    status, version = reply.status, reply.headers.get("x-shipyard-version", "")
            except urllib.error.HTTPError as exc:
                status, version = exc.code, exc.headers.get("x-shipyard-version", "")
            except OSError:
                status, version = 0, ""
            with lock:
                seen["requests"] += 1
                seen["candidate"] += version.startswith("candidate")
                seen["errors"] += status >= 500 or status == 0
            stop.wait(2 / args.rate)

    threads = [threading.Thread(target=browse, args=(n,)) for n in range(2)]
    if args.focus:
        threading.Thread(target=watch_routes, daemon=True).start()
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        stop.set()
    print(
        f"visitors: {seen['requests']:,} requests, {seen['candidate']:,} served by canary "
        f"candidates, {seen['errors']} errors"
    )


if __name__ == "__main__":
    main()
