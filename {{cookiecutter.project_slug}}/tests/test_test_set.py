"""The test set is looked at once: every use recorded, counted across runs, warned about."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.evaluate.test_use import (
    RUN_RECORD,
    log_path,
    read_log,
    record_test_use,
    splits_sha256,
    summary_lines,
    uses_of,
)
from {{ cookiecutter.package_name }}.runs.table import list_runs, sort_runs
from {{ cookiecutter.package_name }}.utils.errors import ProjectError


def test_uses_are_counted_per_dataset_across_runs(project: Path) -> None:
    splits = project / "data" / "tiny" / "splits.json"
    splits.parent.mkdir(parents=True)
    splits.write_text('{"test": ["c1"]}', encoding="utf-8")
    first, second = (project / "runs" / f"2024-01-0{i}_000000_r{i}" for i in (1, 2))
    first.mkdir(parents=True)
    second.mkdir()
    said: list[str] = []
    assert (
        record_test_use("evaluate", [first], "data/tiny", {"checkpoint": "best"}, echo=said.append)
        == []
    )
    assert record_test_use("evaluate", [first], "data/tiny", echo=said.append)[0]["runs"] == [
        first.name
    ]
    assert said == []  # the same run again: counted, not a selection among runs
    earlier = record_test_use("evaluate", [second], "data/tiny", echo=said.append)
    assert len(earlier) == 2
    assert len(said) == 1 and said[0].startswith("warning:") and first.name in said[0]
    assert "2 time(s)" in said[0] and second.name not in said[0]
    record_test_use("evaluate", [first], "data/other", echo=said.append)  # another test set
    assert len(said) == 1
    assert [r["use"] for r in read_log()] == [1, 2, 3, 1]
    assert len(uses_of("data/tiny")) == 3 and len(uses_of("data/other")) == 1
    digest = hashlib.sha256(splits.read_bytes()).hexdigest()
    assert splits_sha256("data/tiny") == digest
    assert {r["splits_sha256"] for r in uses_of("data/tiny")} == {digest}
    assert len(json.loads((first / RUN_RECORD).read_text())) == 3
    assert len(json.loads((second / RUN_RECORD).read_text())) == 1
    lines = summary_lines("data/tiny", second.name)
    assert "used 3 time(s) in this project (evaluate 3;" in lines[0]
    assert f"`{first.name}` (2 times)" in lines[0]
    assert any("Other runs used it too (1)" in line for line in lines)
    log = (project / "EXPERIMENTS.md").read_text()
    assert log.count("TEST SET used (evaluate; use") == 4 and digest[:12] in log
    assert log_path() == project / "reports" / "test_set_log.jsonl"
    splits.write_text('{"test": ["c2"]}', encoding="utf-8")  # re-split: a different test set
    record_test_use("compare", [first, second], "data/tiny", echo=said.append)
    assert any("changed between those uses" in line for line in summary_lines("data/tiny", "x"))
    with pytest.raises(ValueError, match="event"):
        record_test_use("peek", [first], "data/tiny")


@pytest.mark.slow
def test_test_evaluations_are_recorded_and_a_second_run_is_warned(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = shutil.copytree(trained, trained.parent / "2099-01-01_000000_other")
    assert main(["evaluate", str(trained)]) == 0  # validation: not a use of the test set
    assert read_log() == []
    assert main(["evaluate", str(trained), "--split", "test"]) == 0
    assert "warning" not in capsys.readouterr().err
    report = json.loads((trained / "evaluation" / "test" / "metrics.json").read_text())
    assert report["splits_sha256"] == splits_sha256("data/tiny") is not None
    val = json.loads((trained / "evaluation" / "val" / "metrics.json").read_text())
    assert val["splits_sha256"] == report["splits_sha256"]  # every evaluation names its split
    assert main(["evaluate", str(other), "--split", "test"]) == 0
    err = capsys.readouterr().err
    assert "warning: the test set of data/tiny was already used 1 time(s)" in err
    assert trained.name in err
    card = (other / "MODEL_CARD.md").read_text()
    assert "was used 2 time(s) in this project" in card
    assert trained.name in card and other.name in card
    records = read_log()
    assert [r["runs"] for r in records] == [[trained.name], [other.name]]
    assert records[1]["settings"] == {"checkpoint": "best", "reference": "label", "folder": "test"}
    # Predicting the test images is a use of the test set too, by the run that predicts them.
    from {{ cookiecutter.package_name }}.data.split import test_cases

    images = [
        str(c.image) for c in test_cases(trained.parents[1] / "data" / "tiny", report["task"])
    ]
    assert main(["predict", str(trained), *images, "--out", "pred"]) == 0
    err = capsys.readouterr().err
    assert f"{len(images)} of the {len(images)} inputs are test cases" in err
    assert other.name in err  # the other run used it before
    assert read_log()[-1]["event"] == "predict"
    assert len(json.loads((trained / RUN_RECORD).read_text())) == 2
    # Comparing two runs on the test set selects on it as well: recorded for both.
    assert main(["compare", str(trained), str(other), "--split", "test"]) == 0
    assert read_log()[-1]["event"] == "compare"
    assert read_log()[-1]["runs"] == [trained.name, other.name]
    assert len(read_log()) == 4 and read_log()[-1]["use"] == 4


def test_runs_are_never_sorted_by_a_test_metric(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "--sort", "test"]) == 2
    err = capsys.readouterr().err
    assert "not sorted by a test metric" in err and "--sort best" in err
    with pytest.raises(ProjectError, match="test metric"):
        sort_runs(list_runs(trained.parent), "test_dice")
    assert main(["runs", "--sort", "best"]) == 0
