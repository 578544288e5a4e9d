from __future__ import annotations

import gzip
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.formats import SubmissionFormat
from scoring.grading import (
    GradingResult,
    PreparedSolution,
    SubmissionInvalid,
    grade,
    load_solution,
    validate_submission,
)
from scoring.metrics import MetricSpec
from scoring.validation import SolutionIds
from tests.scoring.conftest import AMS, HIGGS_FORMAT
from tests.scoring.test_metrics import reference_ams

Files = Callable[..., tuple[Path, Path, pd.DataFrame, pd.DataFrame]]


def expected_ams(solution: pd.DataFrame, submission: pd.DataFrame, usage: str) -> float:
    merged = solution.merge(submission, on="EventId")
    part = merged[merged["Usage"] == usage]
    return reference_ams(
        part["Label"].tolist(), part["Class"].tolist(), part["Weight"].tolist(), 10.0
    )


def test_grade_scores_public_and_private_separately(higgs_files: Files) -> None:
    sub_path, sol_path, solution, submission = higgs_files(3000)
    result = grade(sub_path, sol_path, HIGGS_FORMAT, AMS, bootstrap=100, seed=3)
    assert result.status == "scored", result.message + result.detail
    assert result.rows == 3000
    assert result.public == pytest.approx(expected_ams(solution, submission, "Public"), rel=1e-12)
    assert result.private == pytest.approx(expected_ams(solution, submission, "Private"), rel=1e-12)
    assert result.public_ci is not None
    assert result.private_ci is not None
    assert result.public_ci[0] <= result.public <= result.public_ci[1]
    assert result.private_ci[0] <= result.private <= result.private_ci[1]
    again = grade(sub_path, sol_path, HIGGS_FORMAT, AMS, bootstrap=100, seed=3)
    assert again.public_ci == result.public_ci
    assert GradingResult.from_dict(result.to_dict()) == result


@pytest.mark.parametrize("packing", ["gzip", "zip", "parquet"])
def test_compressed_and_parquet_submissions_score_the_same(
    higgs_files: Files, tmp_path: Path, packing: str
) -> None:
    sub_path, sol_path, _, submission = higgs_files(500)
    plain = grade(sub_path, sol_path, HIGGS_FORMAT, AMS, bootstrap=0)
    packed = tmp_path / f"packed.{packing}"
    if packing == "gzip":
        packed.write_bytes(gzip.compress(sub_path.read_bytes()))
    elif packing == "zip":
        with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(sub_path, "predictions.csv")
    else:
        submission.to_parquet(packed)
    result = grade(packed, sol_path, HIGGS_FORMAT, AMS, bootstrap=0)
    assert result.status == "scored", result.message
    assert (result.public, result.private) == (plain.public, plain.private)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


IDS = np.array([10, 11, 12, 13])


@pytest.mark.parametrize(
    ("lines", "fragments"),
    [
        (["EventId,RankOrdr,Class", "10,1,b"], ["'RankOrder' is missing", "did you mean 'RankOrdr'"]),
        (["EventId,RankOrder,Class,Extra", "10,1,b,1"], ["'Extra' is not expected"]),
        (
            ["EventId,RankOrder,Class", "10,1,b", "11,2,x", "12,3,b", "13,4,S"],
            ["'Class'", "lines 3, 5", "one of 's', 'b'"],
        ),
        (
            ["EventId,RankOrder,Class", "10,1,b", "11,2,b", "12,2,b", "13,4,s"],
            ["permutation of 1..4", "rank 2 appears on lines 3, 4"],
        ),
        (
            ["EventId,RankOrder,Class", "10,1,b", "11,2,b", "12,5,b", "13,4,s"],
            ["permutation of 1..4", "line 4 holds 5"],
        ),
        (
            ["EventId,RankOrder,Class", "10,1,b", "11,2,b", "11,3,b", "13,4,s"],
            ["line 4 repeat ids", "11"],
        ),
        (
            ["EventId,RankOrder,Class", "10,1,b", "11,2,b", "99,3,b", "13,4,s"],
            ["line 4 has an id that is not in the test set", "99"],
        ),
        (["EventId,RankOrder,Class", "10,1,b", "11,2,b", "13,3,s"], ["1 ids are missing", "12"]),
        (
            ["EventId,RankOrder,Class", "10,1,b", "11,,b", "12,3,b", "13,4,s"],
            ["'RankOrder' is empty on line 3"],
        ),
        (
            ["EventId,RankOrder,Class", "10,1,b", "11,two,b", "12,3,b", "13,4,s"],
            ["not numbers on line 3", "'two'"],
        ),
        (
            ["EventId,RankOrder,Class", "10,1,b", "11,2,b,7", "12,3,b", "13,4,s"],
            ["line 3 has 4 fields but the header has 3"],
        ),
        (["EventId,RankOrder,Class"], ["header but no rows"]),
    ],
)
def test_invalid_submissions_name_the_line_and_the_fix(
    tmp_path: Path, lines: list[str], fragments: list[str]
) -> None:
    path = write_lines(tmp_path / "sub.csv", lines)
    with pytest.raises(SubmissionInvalid) as info:
        validate_submission(path, HIGGS_FORMAT, IDS)
    for fragment in fragments:
        assert fragment in info.value.message


def test_probability_and_float_checks(tmp_path: Path) -> None:
    from scoring.formats import SubmissionFormat

    fmt = SubmissionFormat.from_dict({"id": "id", "columns": {"p": "probability", "x": "float"}})
    ids = np.array(["a", "b", "c"])
    ok = write_lines(tmp_path / "ok.csv", ["id,p,x", "c,0.5,1", "a,0,2.5", "b,1,-3"])
    frame = validate_submission(ok, fmt, ids)
    assert frame["id"].tolist() == ["a", "b", "c"]
    assert frame["p"].tolist() == [0.0, 1.0, 0.5]
    bad = write_lines(tmp_path / "bad.csv", ["id,p,x", "a,1.5,1", "b,0.1,2", "c,0.2,3"])
    with pytest.raises(SubmissionInvalid, match=r"outside \[0, 1\] on line 2"):
        validate_submission(bad, fmt, ids)
    inf = write_lines(tmp_path / "inf.csv", ["id,p,x", "a,0.5,1", "b,0.1,inf", "c,0.2,3"])
    with pytest.raises(SubmissionInvalid, match="infinite or NaN on line 3"):
        validate_submission(inf, fmt, ids)


def test_zip_bomb_and_non_utf8_are_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress(b"EventId,RankOrder,Class\n" + b"0" * (8 << 20)))
    with pytest.raises(SubmissionInvalid, match="decompresses to more than 1 MiB"):
        validate_submission(bomb, HIGGS_FORMAT, IDS, max_bytes=1 << 20)
    zipped = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.csv", b"0" * (8 << 20))
    with pytest.raises(SubmissionInvalid, match="over the 1 MiB limit"):
        validate_submission(zipped, HIGGS_FORMAT, IDS, max_bytes=1 << 20)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"EventId,RankOrder,Class\n10,1,b\n11,2,\xe9\n12,3,b\n13,4,s\n")
    with pytest.raises(SubmissionInvalid, match=r"not valid UTF-8 text: byte 0xE9 on line 3 "):
        validate_submission(latin, HIGGS_FORMAT, IDS)


def test_grade_reports_invalid_and_organizer_errors(higgs_files: Files, tmp_path: Path) -> None:
    sub_path, sol_path, solution, _ = higgs_files(200)
    bad = write_lines(tmp_path / "bad.csv", ["EventId,Rank,Class", "1,1,s"])
    invalid = grade(bad, sol_path, HIGGS_FORMAT, AMS)
    assert invalid.status == "invalid"
    assert "RankOrder" in invalid.message
    broken = tmp_path / "broken.parquet"
    solution.drop(columns=["Weight"]).to_parquet(broken)
    error = grade(sub_path, broken, HIGGS_FORMAT, AMS)
    assert error.status == "error"
    assert "Weight" in error.detail
    assert "Weight" not in error.message


def test_repeated_rows_are_reported_as_duplicated_ids_not_ranks(tmp_path: Path) -> None:
    # A file with the same rows twice also repeats ranks; the id problem is the one to fix.
    lines = ["EventId,RankOrder,Class", "10,1,b", "11,2,b", "12,3,b", "13,4,s", "11,2,b", "12,3,b"]
    with pytest.raises(SubmissionInvalid) as info:
        validate_submission(write_lines(tmp_path / "sub.csv", lines), HIGGS_FORMAT, IDS)
    message = info.value.message
    assert message.startswith("duplicated ids: lines 6, 7 repeat ids")
    assert "11 first on line 3" in message
    assert "12 first on line 4" in message
    assert "RankOrder" not in message


def test_private_bootstrap_can_be_left_out_without_changing_the_public_interval(
    higgs_files: Files,
) -> None:
    sub_path, sol_path, _, _ = higgs_files(3000)
    full = grade(sub_path, sol_path, HIGGS_FORMAT, AMS, bootstrap=100, seed=5)
    public_only = grade(sub_path, sol_path, HIGGS_FORMAT, AMS, bootstrap=100, bootstrap_private=0,
                        seed=5)
    private_only = grade(sub_path, sol_path, HIGGS_FORMAT, AMS, bootstrap=0, bootstrap_private=100,
                         seed=5)
    assert (public_only.public, public_only.private) == (full.public, full.private)
    assert public_only.public_ci == full.public_ci
    assert public_only.private_ci is None
    assert private_only.public_ci is None
    # Each subset has its own generator: the Private interval does not depend on the Public one.
    assert private_only.private_ci == full.private_ci
    assert full.public_ci != full.private_ci


@pytest.mark.parametrize(
    "ids",
    [
        np.array([13, 10, 12, 11]),  # dense: the lookup table
        np.array([13, 10, 10**12, 11]),  # sparse: the hash index
        np.array(["d", "a", "c", "b"], dtype=object),  # string ids
    ],
)
def test_a_prepared_id_lookup_places_rows_like_the_bare_ids(tmp_path: Path, ids: np.ndarray) -> None:
    fmt = SubmissionFormat.from_dict({"id": "Id", "columns": {"p": "float"}})
    rows = [f"{i},{k / 10}" for k, i in enumerate(ids[::-1])]
    ok = write_lines(tmp_path / "ok.csv", ["Id,p", *rows])
    stranger = "zz" if ids.dtype == object else "99999"
    missing = write_lines(tmp_path / "missing.csv", ["Id,p", *rows[:-1], f"{stranger},0.5"])
    lookup = SolutionIds(ids)
    for _ in range(2):  # reused, as the zygote reuses it for every submission
        prepared = validate_submission(ok, fmt, lookup)
        pd.testing.assert_frame_equal(prepared, validate_submission(ok, fmt, ids))
        with pytest.raises(SubmissionInvalid) as bare:
            validate_submission(missing, fmt, ids)
        with pytest.raises(SubmissionInvalid) as shared:
            validate_submission(missing, fmt, lookup)
        assert shared.value.message == bare.value.message
        assert stranger in bare.value.message


def test_grading_a_prepared_solution_gives_the_same_result(higgs_files: Files) -> None:
    sub_path, sol_path, _, _ = higgs_files(2000)
    frame = load_solution(sol_path, HIGGS_FORMAT, AMS)
    prepared = PreparedSolution.of(frame, HIGGS_FORMAT)
    plain = grade(sub_path, frame, HIGGS_FORMAT, AMS, bootstrap=50, seed=4)
    again = grade(sub_path, prepared, HIGGS_FORMAT, AMS, bootstrap=50, seed=4)
    assert again.status == "scored"
    assert (again.public, again.private, again.public_ci, again.private_ci) == (
        plain.public, plain.private, plain.public_ci, plain.private_ci
    )


def test_a_file_in_the_solutions_order_and_an_open_file_score_like_a_shuffled_path(
    higgs_files: Files, tmp_path: Path
) -> None:
    # The conftest file is shuffled (the id lookup); the same rows in the solution's order take
    # the in-order path, and an open handle is mapped instead of read: same numbers.
    sub_path, sol_path, solution, submission = higgs_files(2000)
    in_order = tmp_path / "in-order.csv"
    ordered = submission.set_index("EventId").loc[solution["EventId"]].reset_index()
    ordered.to_csv(in_order, index=False)
    shuffled = grade(sub_path, sol_path, HIGGS_FORMAT, AMS, bootstrap=40, seed=2)
    assert shuffled.status == "scored"
    with in_order.open("rb") as first, sub_path.open("rb") as second:
        results = [
            grade(source, sol_path, HIGGS_FORMAT, AMS, bootstrap=40, seed=2)
            for source in (in_order, first, second)
        ]
    for again in results:
        assert (again.public, again.private, again.public_ci, again.private_ci) == (
            shuffled.public,
            shuffled.private,
            shuffled.public_ci,
            shuffled.private_ci,
        )


def test_an_almost_in_order_file_is_still_checked_row_by_row(tmp_path: Path) -> None:
    fmt = SubmissionFormat.from_dict({"id": "Id", "columns": {"p": "float"}})
    ids = np.arange(10, 20)
    lookup = SolutionIds(ids)
    assert lookup.in_order(np.arange(10, 20))
    assert not lookup.in_order(np.array([*range(10, 19), 18]))
    rows = [f"{i},0.5" for i in ids]
    repeated = write_lines(tmp_path / "repeated.csv", ["Id,p", *rows[:-1], "18,0.5"])
    with pytest.raises(SubmissionInvalid, match="duplicated ids"):
        validate_submission(repeated, fmt, lookup)
    with repeated.open("rb") as handle, pytest.raises(SubmissionInvalid, match="duplicated ids"):
        validate_submission(handle, fmt, lookup)
    prepared = validate_submission(write_lines(tmp_path / "ok.csv", ["Id,p", *rows]), fmt, lookup)
    assert prepared["Id"].tolist() == ids.tolist()


def test_a_prepared_solution_splits_its_rows_once_per_metric(higgs_files: Files) -> None:
    sub_path, sol_path, _, _ = higgs_files(1000)
    frame = load_solution(sol_path, HIGGS_FORMAT, AMS)
    prepared = PreparedSolution.of(frame, HIGGS_FORMAT)
    first = prepared.split(AMS)
    assert [p.key for p in first] == ["public", "private"]
    assert prepared.split(AMS) is first  # kept, as the zygote keeps it for its children
    assert sum(len(p.rows) for p in first) == len(frame)
    organizer = MetricSpec.from_dict({"name": "python", "file": "metric.py"})
    assert prepared.split(organizer) is not prepared.split(organizer)  # fresh frames for them
    plain = grade(sub_path, frame, HIGGS_FORMAT, AMS, bootstrap=30, seed=9)
    for _ in range(2):
        again = grade(sub_path, prepared, HIGGS_FORMAT, AMS, bootstrap=30, seed=9)
        assert (again.public, again.private, again.public_ci) == (
            plain.public,
            plain.private,
            plain.public_ci,
        )
