from __future__ import annotations

import pytest

from scoring.formats import ColumnSpec, FormatError, SubmissionFormat


def test_bundle_form_round_trips() -> None:
    bundle = {"id": "EventId", "columns": {"RankOrder": "rank", "Class": {"values": ["s", "b"]}}}
    fmt = SubmissionFormat.from_dict(bundle)
    assert fmt.id_column == "EventId"
    assert fmt.columns == (
        ColumnSpec("RankOrder", "rank"),
        ColumnSpec("Class", "category", ("s", "b")),
    )
    assert fmt.to_dict() == bundle
    assert fmt.expected_header() == ["EventId", "RankOrder", "Class"]


def test_explicit_kind_in_mapping() -> None:
    fmt = SubmissionFormat.from_dict({"id": "id", "columns": {"p": {"kind": "probability"}}})
    assert fmt.columns[0].kind == "probability"


@pytest.mark.parametrize(
    ("bundle", "fragment"),
    [
        ({"id": "id", "columns": {"x": "decimal"}}, "unknown kind 'decimal'"),
        ({"id": "id", "columns": {"x": {"kind": "category"}}}, "needs a list of values"),
        ({"id": "id", "columns": {"id": "float"}}, "repeats a column name"),
        ({"id": "id", "columns": {}}, "at least one prediction column"),
        ({"columns": {"x": "float"}}, "'id' and 'columns'"),
    ],
)
def test_malformed_formats_say_what_is_wrong(bundle: dict[str, object], fragment: str) -> None:
    with pytest.raises(FormatError, match=fragment):
        SubmissionFormat.from_dict(bundle)
