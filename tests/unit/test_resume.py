"""Per-item logs and resume decisions (sam_bench.resume), without a model."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sam_bench.resume import (
    ITEM_LOG,
    comparable,
    find_sweep_to_resume,
    finished_record,
    open_item_log,
    search_root,
)

HEADER = {"identity": {"task": "amg", "data": "abc"}, "weights": {"weights": "random", "seed": 0}}


def test_item_log_survives_a_torn_last_line_and_reuses_only_safe_items(tmp_path: Path) -> None:
    log = open_item_log(tmp_path, HEADER, reuse=False)
    log.append("1", {"error": None, "miou": 0.5}, [{"mask": 1}], True)
    log.append("2", {"error": "bad file", "error_kind": "data"}, None, False)
    log.append("3", {"error": "RuntimeError: OOM", "error_kind": "runtime"}, None, False)
    log.append("4", {"error": None}, None, False)  # a task that cannot encode predictions
    log.close()
    with (tmp_path / ITEM_LOG).open("a") as f:
        f.write('{"image_id": "5", "row": {"err')  # killed mid-write
    again = open_item_log(tmp_path, HEADER, reuse=True)
    assert set(again.entries) == {"1", "2", "3", "4"}
    assert again.reusable("1")["prediction"] == [{"mask": 1}]
    assert again.reusable("2") is not None  # a data error stays an error
    assert again.reusable("3") is None  # a runtime error is tried again
    assert again.reusable("4") is None and again.reusable("5") is None
    # the torn line is gone from the file, so appending goes on cleanly
    lines = (tmp_path / ITEM_LOG).read_text().splitlines()
    assert all(json.loads(line) for line in lines) and len(lines) == 5


def test_a_malformed_journal_line_is_reported_and_skipped(tmp_path: Path, caplog) -> None:
    """Lines that parse as JSON but are not entries (a hand edit, another tool) never reach
    the loop: each is reported with the file and line number, its item computed again."""
    log = open_item_log(tmp_path, HEADER, reuse=False)
    log.append("1", {"error": None, "miou": 0.5}, [{"mask": 1}], True)
    log.close()
    with (tmp_path / ITEM_LOG).open("a") as f:
        f.write('{"image_id": "2", "row": "not a row", "prediction": [], "saved": false}\n')
        f.write("[1, 2, 3]\n")
        f.write('{"row": {"error": null}, "prediction": []}\n')
        f.write('{"image_id": "3", "row": {"error": null}, "prediction": [], "saved": 1}\n')
    log.append("4", {"error": None}, [{"mask": 4}], False)
    log.close()
    with caplog.at_level("WARNING", logger="sam_bench.resume"):
        again = open_item_log(tmp_path, HEADER, reuse=True)
    assert set(again.entries) == {"1", "4"}
    path = tmp_path / ITEM_LOG
    for number, why in ((3, "no row"), (4, "not a JSON object"), (5, "no image_id"), (6, "saved")):
        assert any(f"{path} line {number} " in m and why in m for m in caplog.messages), number
    assert again.reusable("4")["prediction"] == [{"mask": 4}]


def test_item_log_of_another_configuration_is_discarded(tmp_path: Path) -> None:
    log = open_item_log(tmp_path, HEADER, reuse=False)
    log.append("1", {"error": None}, [1], False)
    log.close()
    other = {**HEADER, "identity": {"task": "amg", "data": "other"}}
    assert open_item_log(tmp_path, other, reuse=True).entries == {}
    assert not (tmp_path / ITEM_LOG).exists()
    log = open_item_log(tmp_path, HEADER, reuse=False)  # no resume: start over
    assert log.entries == {} and not (tmp_path / ITEM_LOG).exists()


def _record(tmp_path: Path, status: str = "ok", seed: int = 0, data: str = "abc") -> Path:
    job = tmp_path / "0"
    job.mkdir(exist_ok=True)
    record = {
        "status": status,
        "config": {"model": {"weights": "random"}, "seed": seed},
        "config_identity": {"task": "amg", "data": data, "weights": "w" * 64},
    }
    (job / "result.json").write_text(json.dumps(record))
    return job


def test_a_finished_record_is_reused_only_for_the_same_configuration(tmp_path: Path) -> None:
    identity = {"task": "amg", "data": "abc", "weights": None}
    config = {"model": {"weights": "random"}, "seed": 0}
    assert comparable({"a": 1, "weights": "x"}) == {"a": 1}
    job = _record(tmp_path)
    assert finished_record(job, identity, config)[0] is not None
    assert finished_record(job, {**identity, "data": "changed"}, config)[0] is None
    assert finished_record(job, identity, {**config, "seed": 1})[0] is None  # other weights
    job = _record(tmp_path, status="failed")
    record, why = finished_record(job, identity, config)
    assert record is None and "failed" in why
    assert finished_record(tmp_path / "missing", identity, config) == (None, "no record")


def test_the_most_recent_sweep_with_the_same_overrides_is_found(tmp_path: Path) -> None:
    def sweep(name: str, overrides: list[str]) -> Path:
        folder = tmp_path / "multirun" / name
        folder.mkdir(parents=True)
        lines = "\n".join(f"    - {o}" for o in overrides)
        (folder / "multirun.yaml").write_text(f"hydra:\n  overrides:\n    task:\n{lines}\n")
        return folder

    old = sweep("2026-11-30/10-00-00", ["a=1,2", "b=3"])
    time.sleep(0.01)
    new = sweep("2026-12-01/09-00-00", ["b=3", "a=1,2", "resume=true"])
    sweep("2026-12-01/10-00-00", ["a=1,2"])  # other overrides
    os.utime(old / "multirun.yaml", (1, 1))
    root = search_root("multirun/${now:%Y-%m-%d}/${now:%H-%M-%S}", tmp_path)
    assert root == tmp_path / "multirun/"
    assert find_sweep_to_resume(root, ["a=1,2", "b=3", "resume=true"]) == new
    assert find_sweep_to_resume(root, ["a=1,2", "b=4"]) is None
    assert find_sweep_to_resume(tmp_path / "nowhere", []) is None


def test_a_failed_job_keeps_its_journal_a_finished_one_drops_it(tmp_path: Path) -> None:
    """write_outcome: the journal outlives a failed job (resume continues from it) and goes
    once the record of a finished job holds everything."""
    from omegaconf import OmegaConf

    from sam_bench.record import new_record
    from sam_bench.run import JobSpec, write_outcome

    for status, kept in (("failed", True), ("ok", False), ("partial", False)):
        job = tmp_path / status
        log = open_item_log(job, HEADER, reuse=False)
        log.append("1", {"error": None, "miou": 0.5}, [{"mask": 1}], False)
        log.close()
        record = new_record()
        record.update(status=status, task_spec={"objective": "miou"}, metrics={"miou": 0.5})
        write_outcome(JobSpec(OmegaConf.create({}), job, []), record, [{"image_id": "1"}])
        assert (job / "result.json").is_file()
        assert (job / ITEM_LOG).is_file() == kept, status
