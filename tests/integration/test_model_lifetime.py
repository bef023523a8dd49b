"""A job's model does not outlive the job (issue 14, point 4): in a sweep over model sizes the
previous model must not hold memory while the next is built and measured."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest
from hydra import compose

from sam_bench.run import run_job
from sam_bench.tasks.amg import AMGTask

pytestmark = pytest.mark.usefixtures("hydra_conf")


def watch_models(monkeypatch: pytest.MonkeyPatch) -> list[weakref.ref[Any]]:
    """Weak references to every model the AMG task builds from now on (the real build)."""
    refs: list[weakref.ref[Any]] = []
    build = AMGTask.build_model.__func__  # type: ignore[attr-defined]

    def watched(cls: type[AMGTask], cfg: Any, device: Any) -> Any:
        model, weights = build(cls, cfg, device)
        refs.append(weakref.ref(model))
        return model, weights

    monkeypatch.setattr(AMGTask, "build_model", classmethod(watched))
    return refs


def test_the_model_is_collected_when_the_job_ends(tmp_path: Path, monkeypatch) -> None:
    refs = watch_models(monkeypatch)
    for engine in ("fast", "reference"):
        cfg = compose(
            "config",
            overrides=[
                "model.weights=random", f"engine={engine}", "amg.points_per_side=2",
                "dataset.limit=1", "tracking=none", "progress=false",
            ],
        )  # fmt: skip
        record = run_job(cfg, tmp_path / engine, overrides=[], base_dir=tmp_path)
        assert record["status"] == "ok", record.get("error")
        assert refs and refs[-1]() is None, f"engine={engine}: the model outlived its job"
        assert gc.get_freeze_count() == 0  # the job's settled heap is handed back
    assert len(refs) == 2


def test_a_single_run_that_ends_the_process_leaves_its_model_to_the_collector(
    tmp_path: Path, monkeypatch
) -> None:
    """``process_ends=True`` skips the job-end collection, and still hands the heap back: an
    ordinary collection then frees the model."""
    refs = watch_models(monkeypatch)
    cfg = compose(
        "config",
        overrides=["model.weights=random", "amg.points_per_side=2", "dataset.limit=1",
                   "tracking=none", "progress=false"],
    )  # fmt: skip
    record = run_job(cfg, tmp_path / "job", overrides=[], base_dir=tmp_path, process_ends=True)
    assert record["status"] == "ok", record.get("error")
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert refs and refs[-1]() is None
