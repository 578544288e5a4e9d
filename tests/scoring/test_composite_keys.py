"""Composite submission keys: TrackML's ``event_id,hit_id,track_id`` with hit ids restarting at 1
in every event, graded from files as ``podium score`` does."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.commands import infer_format, run_score_command
from scoring.formats import FormatError, SubmissionFormat
from scoring.grading import SolutionError, grade
from scoring.metrics import MetricSpec
from scoring.validation import SubmissionInvalid, validate_submission
from tests.scoring.test_more_metrics import close, reference_trackml

TRACKML = {"id": ["event_id", "hit_id"], "columns": {"track_id": "int"}}
FMT = SubmissionFormat.from_dict(TRACKML)
METRIC = MetricSpec.from_dict({"name": "trackml"})


def kaggle_events(seed: int, events: int = 4, huge_ids: bool = False
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Truth (event_id, hit_id, particle_id, weight) and a shuffled submission, hit ids 1..n
    in every event; ``huge_ids`` draws 60-bit particle and track ids (the hashing path)."""
    rng = np.random.default_rng(seed)
    truth, sub = [], []
    for event in range(events):
        n = int(rng.integers(30, 300))
        particle = rng.integers(0, max(2, n // 6), n)
        weight = np.where(particle == 0, 0.0, rng.random(n))
        weight /= weight.sum()
        track = np.where(rng.random(n) < 0.7, particle, rng.integers(0, n // 4 + 1, n))
        if huge_ids:
            particle = np.where(particle == 0, 0, particle * 7919 + (1 << 58))
            track = track * 104729 + (1 << 59)
        hit = np.arange(1, n + 1)
        truth.append(pd.DataFrame({"event_id": 1000 + event, "hit_id": hit,
                                   "particle_id": particle, "weight": weight}))
        sub.append(pd.DataFrame({"event_id": 1000 + event, "hit_id": hit, "track_id": track}))
    submission = pd.concat(sub, ignore_index=True)
    return (pd.concat(truth, ignore_index=True),
            submission.sample(frac=1.0, random_state=seed).reset_index(drop=True))


def per_event_reference(truth: pd.DataFrame, submission: pd.DataFrame) -> float:
    """reference_trackml needs hit ids unique across events: make them so, then compare."""
    offset = truth["event_id"] * 1_000_000
    t = truth.assign(hit_id=truth["hit_id"] + offset)
    s = submission.assign(hit_id=submission["hit_id"] + submission["event_id"] * 1_000_000)
    return reference_trackml(t, s[["hit_id", "track_id"]])


def test_format_reads_and_writes_a_composite_key() -> None:
    assert FMT.key == ("event_id", "hit_id")
    assert FMT.id_column == "event_id"
    assert FMT.composite
    assert FMT.expected_header() == ["event_id", "hit_id", "track_id"]
    assert SubmissionFormat.from_dict(FMT.to_dict()) == FMT
    assert SubmissionFormat.from_dict({"id": "EventId", "columns": {"p": "float"}}).to_dict()[
        "id"] == "EventId"
    with pytest.raises(FormatError, match="composite key"):
        SubmissionFormat.from_dict({"id": [], "columns": {"track_id": "int"}})
    with pytest.raises(FormatError, match="repeats"):
        SubmissionFormat.from_dict({"id": ["a", "a"], "columns": {"t": "int"}})


@pytest.mark.parametrize(("seed", "huge"), [(0, False), (1, True), (2, False), (3, True)])
def test_kaggle_trackml_files_are_graded_by_their_composite_key(
    tmp_path: Path, seed: int, huge: bool
) -> None:
    truth, sub = kaggle_events(seed, huge_ids=huge)
    sol_path = tmp_path / "solution.parquet"
    truth.to_parquet(sol_path)
    sub_path = tmp_path / "submission.csv.gz"
    sub_path.write_bytes(gzip.compress(sub.to_csv(index=False).encode()))
    expected = per_event_reference(truth, sub)
    out = run_score_command("trackml", sol_path, sub_path, {}, bootstrap=10)
    assert out["status"] == "scored", out
    assert out["key"] == ["event_id", "hit_id"]
    assert close(out["public"], expected)
    # The bundle's format gives the same score.
    same = run_score_command("trackml", sol_path, sub_path, {}, format=TRACKML, bootstrap=0)
    assert same["public"] == out["public"]


def test_infer_format_finds_the_leading_key_columns(tmp_path: Path) -> None:
    truth, sub = kaggle_events(5)
    sol = tmp_path / "s.parquet"
    truth.to_parquet(sol)
    path = tmp_path / "sub.csv"
    sub.to_csv(path, index=False)
    fmt = infer_format(sol, path, predictions=["track_id"])
    assert fmt.key == ("event_id", "hit_id")
    assert [c.name for c in fmt.columns] == ["track_id"]
    one = tmp_path / "one.csv"
    sub[["event_id"]].to_csv(one, index=False)
    with pytest.raises(SubmissionInvalid, match="at least one prediction column"):
        infer_format(sol, one, predictions=["track_id"])


def write(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "sub.csv"
    frame.to_csv(path, index=False)
    return path


def test_missing_extra_and_duplicated_keys_are_named_by_line(tmp_path: Path) -> None:
    truth, _ = kaggle_events(7, events=2)
    keys = truth[["event_id", "hit_id"]]
    good = truth[["event_id", "hit_id"]].assign(track_id=1)
    frame = validate_submission(write(tmp_path, good), FMT, keys)
    assert frame["event_id"].tolist() == truth["event_id"].tolist()
    assert frame["hit_id"].tolist() == truth["hit_id"].tolist()

    extra = pd.concat([good, pd.DataFrame({"event_id": [1000], "hit_id": [99999],
                                           "track_id": [1]})], ignore_index=True)
    with pytest.raises(SubmissionInvalid) as caught:
        validate_submission(write(tmp_path, extra), FMT, keys)
    assert f"line {len(extra) + 1}" in caught.value.message
    assert "(event_id=1000, hit_id=99999)" in caught.value.message
    assert "not in the test set" in caught.value.message

    # An event id outside the solution's range, a hit id below it: both unknown.
    outside = good.copy()
    outside.loc[3, "event_id"] = 5
    outside.loc[4, "hit_id"] = -2
    with pytest.raises(SubmissionInvalid, match="lines 5, 6 have keys that are not in the test"):
        validate_submission(write(tmp_path, outside), FMT, keys)

    duplicated = good.copy()
    duplicated.loc[10, ["event_id", "hit_id"]] = duplicated.loc[2, ["event_id", "hit_id"]]
    with pytest.raises(SubmissionInvalid) as caught:
        validate_submission(write(tmp_path, duplicated), FMT, keys)
    message = caught.value.message
    assert message.startswith("duplicated keys: line 12 repeat")
    assert "first on line 4" in message

    missing = good.drop(index=[0, 5]).reset_index(drop=True)
    with pytest.raises(SubmissionInvalid) as caught:
        validate_submission(write(tmp_path, missing), FMT, keys)
    assert "2 keys are missing" in caught.value.message
    assert "(event_id=1000, hit_id=1)" in caught.value.message

    empty_key = good.astype(object)
    empty_key.loc[7, "hit_id"] = None
    with pytest.raises(SubmissionInvalid, match="key column 'hit_id' is empty on line 9"):
        validate_submission(write(tmp_path, empty_key), FMT, keys)


def test_text_keys_and_wide_integer_keys(tmp_path: Path) -> None:
    keys = pd.DataFrame({"run": ["a", "a", "b"], "n": [1, 2, 1]})
    fmt = SubmissionFormat.from_dict({"id": ["run", "n"], "columns": {"y": "float"}})
    path = write(tmp_path, pd.DataFrame({"run": ["b", "a", "a"], "n": [1, 2, 1],
                                         "y": [3.0, 2.0, 1.0]}))
    assert validate_submission(path, fmt, keys)["y"].tolist() == [1.0, 2.0, 3.0]
    wide = pd.DataFrame({"a": [0, 1 << 40], "b": [0, 1 << 40]})
    fmt2 = SubmissionFormat.from_dict({"id": ["a", "b"], "columns": {"y": "float"}})
    path = write(tmp_path, pd.DataFrame({"a": [1 << 40, 0], "b": [1 << 40, 0], "y": [2.0, 1.0]}))
    assert validate_submission(path, fmt2, wide)["y"].tolist() == [1.0, 2.0]


def test_a_solution_with_repeated_keys_is_an_organizer_error(tmp_path: Path) -> None:
    truth, sub = kaggle_events(9, events=2)
    truth.loc[1, "hit_id"] = truth.loc[0, "hit_id"]
    sol_path = tmp_path / "solution.parquet"
    truth.to_parquet(sol_path)
    result = grade(write(tmp_path, sub), sol_path, FMT, METRIC, bootstrap=0)
    assert result.status == "error"
    assert "repeated keys" in result.detail
    assert SolutionError.__name__ in result.detail


def test_gzipped_files_are_streamed_and_their_mistakes_still_named_by_line(
    tmp_path: Path,
) -> None:
    truth, sub = kaggle_events(11, events=2)
    keys = truth[["event_id", "hit_id"]]
    text = sub.to_csv(index=False)
    good = tmp_path / "good.csv.gz"
    good.write_bytes(gzip.compress(text.encode()))
    assert len(validate_submission(good, FMT, keys)) == len(truth)
    # Two gzip members, as `cat a.gz b.gz` makes.
    head, tail = text[: len(text) // 2], text[len(text) // 2 :]
    two = tmp_path / "two.csv.gz"
    two.write_bytes(gzip.compress(head.encode()) + gzip.compress(tail.encode()))
    assert len(validate_submission(two, FMT, keys)) == len(truth)
    lines = text.splitlines()
    lines[5] += ",7"
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(SubmissionInvalid, match="line 6 has 4 fields but the header has 3"):
        validate_submission(bad, FMT, keys)
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(SubmissionInvalid, match="the gzip file is truncated"):
        validate_submission(cut, FMT, keys)
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress(b"event_id,hit_id,track_id\n" + b"1,1,1\n" * 400_000))
    with pytest.raises(SubmissionInvalid, match="decompresses to more than 1 MiB"):
        validate_submission(bomb, FMT, keys, max_bytes=1 << 20)
