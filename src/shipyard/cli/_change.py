"""``shipyard change REPO "GOAL"``: a change to one of the project's repositories, as a task."""

from __future__ import annotations

import typer

from shipyard.cli._common import as_option, console, handle_errors, open_runtime, print_json, who
from shipyard.service import submit_change


@handle_errors
def change(
    ctx: typer.Context,
    repo: str = typer.Argument(..., help="The repository, as named by [repos.NAME]."),
    goal: str = typer.Argument(..., help="What the change must achieve, in words."),
    base: str | None = typer.Option(
        None, "--base", help="Branch, tag or commit to start from (default: the repo's base)."
    ),
    tier: str | None = typer.Option(
        None, "--tier", help="The tier that writes it (default: the repo's, else generate.tier)."
    ),
    as_: str | None = as_option("Submit"),
    again: bool = typer.Option(
        False, "--again", help="Make a new task even if this goal was submitted on this base."
    ),
    as_json: bool = typer.Option(False, "--json", help='Print {"task": ID}.'),
) -> None:
    """Submit GOAL as a change to REPO: generated, verified by the repository's own tests in
    the sandbox, approved, and released as the branch shipyard/<task id>.

    Follow it with `shipyard show TASK`; approve it with `shipyard approve TASK`.
    """
    with open_runtime(ctx) as rt:
        person = who(rt, as_, need="operate")
        result = submit_change(
            rt,
            repo,
            goal,
            base=base,
            tier=tier,
            submitted_by=person.name,
            principal=person.principal,
            again=again,
        )
    task_id = result.submitted[0]
    existing = [e for e in result.existing if e.task_id == task_id]
    if as_json:
        print_json({"task": task_id} | ({"existing": True} if existing else {}))
        return
    if existing:
        console.print(
            f"{task_id} (already submitted: {existing[0].state}; --again makes a new one)",
            highlight=False,
        )
    else:
        console.print(task_id, highlight=False)
