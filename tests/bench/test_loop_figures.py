"""The bench's event-loop figures: the loop thread's CPU is measured apart from the process's other threads, and
the report splits the throughput ratio into the loop's CPU ratio and its busy ratio."""

from __future__ import annotations

import os
import threading
import time

from bench.driver import Phase, drive
from bench.verifications import _loop_line


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def test_the_loop_threads_cpu_excludes_the_other_threads() -> None:
    async def work(i: int, tally: dict[str, int]) -> bool:
        burn(0.002)  # 2 ms of the loop thread's own CPU per item
        return True

    done = threading.Event()

    def other_thread() -> None:  # CPU in the process, but not on the loop's thread
        while not done.is_set():
            burn(0.001)
            time.sleep(0.001)

    helper = threading.Thread(target=other_thread)
    helper.start()
    try:
        phase = await drive("probe", work, 0, 100, None, 4, os.getpid())
    finally:
        done.set()
        helper.join()
    assert phase.done == 100
    assert phase.cpu_loop_s >= 0.2  # at least the 100 × 2 ms burned on the loop
    assert phase.cpu_loop_s < phase.cpu_self_s  # the other thread's CPU is the process's, not the loop's
    assert phase.cpu_loop_s <= phase.elapsed_s * 1.05


def test_the_report_splits_the_ratio_into_cpu_and_busy() -> None:
    baseline = Phase("b", done=200, elapsed_s=2.0, cpu_loop_s=1.98)  # 9.9 ms a verification, busy 99%
    gateway = Phase("a", done=100, elapsed_s=2.0, cpu_loop_s=1.8)  # 18 ms a verification, busy 90%
    line = _loop_line(baseline, gateway)
    assert "(b) 9.90, 99%; (a) 18.00, 90%" in line
    assert "CPU ratio b/a 0.55 x busy ratio a/b 0.91" in line  # 0.55 × 0.91 ≈ 0.5, the throughput ratio
    assert _loop_line(baseline, Phase("a", done=100, elapsed_s=2.0)) == "event-loop thread: not measured"
