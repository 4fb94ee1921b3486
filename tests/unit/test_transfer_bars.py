from __future__ import annotations

from rgrid.cli.transfer import TransferBars


def test_only_large_files_get_a_bar_and_close_ends_the_display() -> None:
    bars = TransferBars(threshold=100)
    assert bars("small.txt", 99) is None
    advance = bars("big.bin", 1000)
    assert advance is not None
    advance(400)
    advance(600)
    shown = bars._bars
    assert shown is not None
    [task] = shown.tasks
    assert (task.description, task.completed, task.total) == ("big.bin", 1000, 1000)
    bars.close()
    assert bars._bars is None and not shown.live.is_started
