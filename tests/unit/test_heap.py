"""sam_bench.heap: settled objects are skipped by full collections until the job releases
them, and nothing created after settling is held back."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from sam_bench import heap


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def cyclic_garbage() -> weakref.ref[Node]:
    ref = weakref.ref(Node())  # unreachable at once, but alive until a collection
    assert ref() is not None
    return ref


def test_settled_cyclic_garbage_waits_for_release() -> None:
    ref = cyclic_garbage()
    heap.settle()
    assert gc.get_freeze_count() > 0
    gc.collect()
    assert ref() is not None, "a full collection walked the settled heap"
    assert heap.release() >= 1
    assert ref() is None and gc.get_freeze_count() == 0


def test_what_is_created_after_settling_is_collected_as_before() -> None:
    heap.settle()
    ref = cyclic_garbage()
    gc.collect()
    assert ref() is None
    assert gc.get_freeze_count() > 0  # the settled heap stays settled


def test_unsettle_hands_settled_objects_back_to_the_collector() -> None:
    ref = cyclic_garbage()
    heap.settle()
    heap.unsettle()
    assert gc.get_freeze_count() == 0 and ref() is not None  # nothing collected yet
    gc.collect()
    assert ref() is None


def test_settling_pauses_collections_then_settles_what_the_block_built() -> None:
    ref = None
    with heap.settling():
        assert not gc.isenabled()
        kept = [Node() for _ in range(3)]  # lives on after the block
        ref = cyclic_garbage()  # the block's garbage: held until release
    assert gc.isenabled() and gc.get_freeze_count() > 0
    gc.collect()
    assert ref() is not None and all(n.me is n for n in kept)
    heap.release()
    assert ref() is None


def test_settling_restores_a_disabled_collector_and_settles_on_error() -> None:
    gc.disable()
    try:
        with pytest.raises(ValueError), heap.settling():
            raise ValueError("the block failed")
        assert not gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.enable()
