"""What a submission file must look like: a key (one id column or several) and typed predictions.

A challenge bundle writes the format as
``{"id": "EventId", "columns": {"RankOrder": "rank", "Class": {"values": ["s", "b"]}}}``, or with
a composite key such as TrackML's ``{"id": ["event_id", "hit_id"], "columns": {"track_id": "int"}}``;
:meth:`SubmissionFormat.from_dict` reads that and :meth:`SubmissionFormat.to_dict` writes it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The column kinds a format may declare, with what each accepts.
COLUMN_KINDS: dict[str, str] = {
    "rank": "a permutation of the integers 1..N (N = number of rows), each used once",
    "float": "a finite number",
    "probability": "a number between 0 and 1",
    "int": "a whole number",
    "category": "one of the listed values",
}


class FormatError(ValueError):
    """The submission format in a challenge bundle is malformed (an organizer-side mistake)."""


@dataclass(frozen=True)
class ColumnSpec:
    """One prediction column of a submission.

    ``kind`` is one of :data:`COLUMN_KINDS`; ``values`` lists the allowed values of a
    ``"category"`` column (compared as strings).
    """

    name: str
    kind: str
    values: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in COLUMN_KINDS:
            raise FormatError(
                f"column {self.name!r}: unknown kind {self.kind!r}; "
                f"use one of {', '.join(sorted(COLUMN_KINDS))}"
            )
        if self.kind == "category" and not self.values:
            raise FormatError(f"column {self.name!r}: a category column needs a list of values")
        if self.kind != "category" and self.values is not None:
            raise FormatError(f"column {self.name!r}: only category columns take values")

    def describe(self) -> str:
        """Say in words what the column accepts (used in validation messages)."""
        if self.kind == "category" and self.values is not None:
            return "one of " + ", ".join(repr(v) for v in self.values)
        return COLUMN_KINDS[self.kind]


@dataclass(frozen=True)
class SubmissionFormat:
    """The columns a submission file must have: the key columns first, then ``columns`` in order.

    ``id_column`` is the first key column; ``key`` lists all of them (a composite key such as
    ``("event_id", "hit_id")`` when a row is identified by several columns). Left empty, the key
    is ``id_column`` alone.
    """

    id_column: str
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", (self.id_column,))
        elif self.key[0] != self.id_column:
            raise FormatError(
                f"submission format: id_column {self.id_column!r} must be the first key column "
                f"of {list(self.key)}"
            )
        names = [*self.key, *(c.name for c in self.columns)]
        if len(set(names)) != len(names):
            raise FormatError(f"submission format repeats a column name: {names}")
        if not self.columns:
            raise FormatError("submission format needs at least one prediction column")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SubmissionFormat:
        """Read the bundle form ``{"id": ..., "columns": {name: kind | {"values": [...]}}}``.

        A column given as a mapping may also say ``{"kind": "probability"}``; a mapping with
        ``values`` and no kind is a category column.
        """
        if not isinstance(d, Mapping) or "id" not in d or "columns" not in d:
            raise FormatError(
                "submission format must be a mapping with 'id' and 'columns', e.g. "
                "{id: EventId, columns: {RankOrder: rank, Class: {values: [s, b]}}}"
            )
        raw_columns = d["columns"]
        if not isinstance(raw_columns, Mapping):
            raise FormatError("submission 'columns' must map column names to kinds")
        columns = []
        for name, spec in raw_columns.items():
            if isinstance(spec, str):
                columns.append(ColumnSpec(str(name), spec))
            elif isinstance(spec, Mapping):
                values = spec.get("values")
                kind = spec.get("kind", "category" if values is not None else None)
                if kind is None:
                    raise FormatError(f"column {name!r}: give a kind or a list of values")
                columns.append(
                    ColumnSpec(
                        str(name),
                        str(kind),
                        tuple(str(v) for v in values) if values is not None else None,
                    )
                )
            else:
                raise FormatError(f"column {name!r}: expected a kind name or a mapping")
        raw_id = d["id"]
        if isinstance(raw_id, str | int):
            key: tuple[str, ...] = (str(raw_id),)
        elif isinstance(raw_id, list | tuple) and raw_id and all(
            isinstance(k, str | int) for k in raw_id
        ):
            key = tuple(str(k) for k in raw_id)
        else:
            raise FormatError(
                "submission 'id' must name the id column (id: EventId) or list the columns of a "
                "composite key (id: [event_id, hit_id])"
            )
        return cls(id_column=key[0], columns=tuple(columns), key=key)

    def to_dict(self) -> dict[str, Any]:
        """Write the bundle form read by :meth:`from_dict`."""
        cols: dict[str, Any] = {}
        for c in self.columns:
            if c.kind == "category":
                cols[c.name] = {"values": list(c.values or ())}
            else:
                cols[c.name] = c.kind
        return {"id": self.id_column if len(self.key) == 1 else list(self.key), "columns": cols}

    @property
    def composite(self) -> bool:
        """Whether rows are identified by more than one column."""
        return len(self.key) > 1

    def expected_header(self) -> list[str]:
        """The header line a CSV submission must start with, as a list of names."""
        return [*self.key, *(c.name for c in self.columns)]

    def column(self, name: str) -> ColumnSpec:
        """The spec of prediction column ``name``."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)
