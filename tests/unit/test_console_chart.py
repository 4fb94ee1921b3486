"""The costs page's chart: stacked bars drawn as SVG on the server."""

from __future__ import annotations

from rgrid.console.charts import Bar, bar_chart


def test_bars_stack_runs_and_idle_and_label_each_day_with_its_total() -> None:
    svg = bar_chart([Bar("2026-12-01", 1_500_000, 300_000), Bar("2026-12-02", 700_000)])
    assert svg.count("<rect") == 4  # runs and idle for each day
    assert "€1.80" in svg and "€0.70" in svg and ">12-01<" in svg


def test_labels_are_escaped() -> None:
    assert "<script>" not in bar_chart([Bar("<script>", 1)])


def test_a_window_that_cost_nothing_says_so_instead_of_drawing_empty_bars() -> None:
    assert "every day in this window cost €0.00" in bar_chart([Bar("2026-12-01", 0)])
    assert "no costs" in bar_chart([])
