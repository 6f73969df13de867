"""``settle_heap``: what a long-running process built at start-up is taken out of the cyclic collector's reach."""

from __future__ import annotations

import gc
import weakref

from gateway.web.runner import settle_heap


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_start_up_heap_is_frozen_and_its_garbage_collected_first() -> None:
    before = gc.get_freeze_count()
    alive, garbage = Cycle(), Cycle()
    gone = weakref.ref(garbage)
    del garbage  # a cycle: only the collector frees it
    try:
        frozen = settle_heap()
        assert frozen == gc.get_freeze_count() > before
        assert gone() is None, "start-up's garbage is collected, not frozen"
        assert not any(o is alive for o in gc.get_objects()), "a frozen object is in no generation that is scanned"
    finally:
        gc.unfreeze()  # the test process goes on collecting as before
    assert any(o is alive for o in gc.get_objects())
