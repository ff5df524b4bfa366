"""The ab-test job kind's tests, run against the generated ``ab_test.py``.

Shipyard copies this folder into the check workspace as ``_job/`` and runs
``python -m pytest --rootdir=. _job/tests`` from the workspace root, so the generated module
is importable as ``ab_test``. Standard library and pytest only.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import ab_test

IDS = [f"visitor-{i}" for i in range(10_000)]
TOLERANCE = 0.02


def test_variants_are_two_distinct_strings() -> None:
    variants = list(ab_test.VARIANTS)
    assert len(variants) == 2
    assert all(isinstance(v, str) and v for v in variants)
    assert variants[0] != variants[1]


def test_ratio_is_a_share() -> None:
    assert isinstance(ab_test.RATIO, float)
    assert 0 < ab_test.RATIO < 1


def test_salt_is_a_string() -> None:
    assert isinstance(ab_test.SALT, str) and ab_test.SALT


def test_same_visitor_gets_the_same_variant() -> None:
    for visitor in IDS[:200]:
        first = ab_test.assign(visitor)
        assert ab_test.assign(visitor) == first
        assert ab_test.assign(visitor) == first


def test_assignment_survives_a_reload() -> None:
    before = [ab_test.assign(v) for v in IDS[:1000]]
    module = importlib.reload(ab_test)
    assert [module.assign(v) for v in IDS[:1000]] == before


def test_assignment_is_the_same_in_another_process() -> None:
    """Python's hash() differs between processes; the assignment must not."""
    root = Path(ab_test.__file__).resolve().parent
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import ab_test; "
        "print(''.join('1' if ab_test.assign(f'visitor-{i}') == ab_test.VARIANTS[1] else '0' "
        "for i in range(300)))"
    )
    expected = "".join("1" if ab_test.assign(v) == ab_test.VARIANTS[1] else "0" for v in IDS[:300])
    for seed in ("1", "2"):
        run = subprocess.run(
            [sys.executable, "-c", code, str(root)],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PYTHONHASHSEED": seed, "PYTHONDONTWRITEBYTECODE": "1"},
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == expected, f"different assignment with PYTHONHASHSEED={seed}"


def test_only_the_two_variants_are_returned() -> None:
    seen = {ab_test.assign(v) for v in IDS}
    assert seen <= set(ab_test.VARIANTS), f"unexpected variants: {seen - set(ab_test.VARIANTS)}"


def test_split_follows_the_ratio() -> None:
    treated = sum(ab_test.assign(v) == ab_test.VARIANTS[1] for v in IDS)
    share = treated / len(IDS)
    assert abs(share - ab_test.RATIO) <= TOLERANCE, (
        f"{share:.3f} of visitors got {ab_test.VARIANTS[1]!r}; "
        f"expected {ab_test.RATIO} ± {TOLERANCE}"
    )
