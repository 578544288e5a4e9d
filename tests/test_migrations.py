"""Every Alembic branch has exactly one head, so `upgrade heads` is one well-defined schema."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from challenge.db import alembic_config


def _branch_of(script: ScriptDirectory, head: str) -> str:
    """The label of the base reached by following down_revision only (not depends_on)."""
    todo, seen = [head], set()
    while todo:
        rev = script.get_revision(todo.pop())
        if rev is None or rev.revision in seen:
            continue
        seen.add(rev.revision)
        down = rev.down_revision
        if down is None:
            return ",".join(sorted(rev.branch_labels)) or rev.revision
        todo.extend([down] if isinstance(down, str) else down)
    raise AssertionError(f"{head} reaches no base")


def test_every_branch_has_one_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    by_branch: dict[str, list[str]] = {}
    for head in script.get_heads():
        by_branch.setdefault(_branch_of(script, head), []).append(head)
    assert set(by_branch) == {"challenge", "forum"}
    for branch, heads in by_branch.items():
        assert len(heads) == 1, f"branch {branch} has heads {heads}: add a merge revision"
