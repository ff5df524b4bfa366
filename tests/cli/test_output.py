"""What the command line prints for another program: piped, nothing is wrapped or cut to a
terminal's width, whatever COLUMNS says."""

from __future__ import annotations

from pathlib import Path

from shipyard.config import Project
from support import as_person, run_cli


def test_a_piped_listing_keeps_every_row_on_one_line_and_every_id_whole(project: Project) -> None:
    root: Path = project.root
    done = run_cli(
        root, "submit", "landing-page", "--batch", str(root / "products.csv"), "--as", "shop-owner",
        env={"COLUMNS": "40", **as_person(root, "shop-owner")},
    )  # fmt: skip
    assert done.returncode == 3, done.stderr  # two rows are bad on purpose; the rest go on
    listed = run_cli(root, "list", "--json", env={"COLUMNS": "40"})
    assert listed.returncode == 0, listed.stderr
    ids = [line.split('"')[3] for line in listed.stdout.splitlines() if '"id": "t-' in line]
    assert len(ids) == 20
    table = run_cli(root, "list", env={"COLUMNS": "40"})
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if line.startswith("│ t-")]
    assert len(rows) == 20  # one line per task: nothing wrapped onto a second line
    assert {row.split()[1] for row in rows} == set(ids)  # and the ids whole
    refused = next(row for row in rows if "row 7" in row)
    assert "price" in refused and "…" not in refused  # the reason is shown in full
