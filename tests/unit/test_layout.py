"""File names of items and declared outputs (sam_bench.layout)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sam_bench.layout import JobLayout, Output, declared_outputs, item_stem, renamed_items


def test_item_stems_never_collide_and_keep_safe_ids() -> None:
    """``p/q`` and ``p_q`` wrote the same ``p_q`` file before: now two files."""
    ids = ["p/q", "p_q", "p q", "p:q", "1", "img-0.5", ".hidden", "", "été", "p\\q"]
    stems = [item_stem(i) for i in ids]
    assert len(set(stems)) == len(ids)
    assert item_stem("p_q") == "p_q" and item_stem("1") == "1" and item_stem("img-0.5") == "img-0.5"
    assert item_stem("p/q").startswith("p_q-") and len(item_stem("p/q")) == len("p_q-") + 8
    for stem in stems:
        assert stem and "/" not in stem and not stem.startswith(".")
    assert item_stem("p/q") == item_stem("p/q")  # stable


def test_the_record_maps_renamed_items_to_their_files() -> None:
    assert renamed_items(["1", "p/q", "p_q", "p/q"]) == {"p/q": item_stem("p/q")}


def test_item_files_live_in_folder_outputs(tmp_path: Path) -> None:
    maps = Output("maps", "label_png", "predictions/")
    layout = JobLayout(tmp_path)
    assert layout.item_file(maps, "p/q", ".png") == tmp_path / "predictions" / (
        item_stem("p/q") + ".png"
    )
    with pytest.raises(ValueError):
        layout.item_file(Output("table", "table_csv", "t.csv"), "1", ".png")
    assert layout.written([maps]) == []  # an empty or missing folder was not written
    (tmp_path / "predictions").mkdir()
    (tmp_path / "predictions" / "1.png").write_bytes(b"")
    assert layout.written([maps]) == [maps]


def test_outputs_are_checked_and_old_records_still_declare_theirs() -> None:
    with pytest.raises(ValueError):
        Output("x", "no_such_kind", "x.png")
    with pytest.raises(ValueError):
        Output("x", "figure", "../x.png")
    listed = {"outputs": [Output("maps", "label_png", "predictions/").to_dict()]}
    assert [o.kind for o in declared_outputs(listed)] == ["label_png"]
    legacy = declared_outputs({"task": "video"})  # schema 2: no list, the version's files
    assert "palette_png_sequence" in {o.kind for o in legacy}
    assert declared_outputs({"task": "a-new-task"}) == []
