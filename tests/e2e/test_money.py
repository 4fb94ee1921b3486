"""Money through the real CLI: priced runs, reports that reconcile, limits, budgets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from rgrid.money.pricing import format_microns
from tests.e2e.conftest import Cli, isolated_env
from tests.e2e.test_errors import one_clear_line

pytestmark = pytest.mark.e2e

# 3,600 EUR an hour: a millisecond of one of the two slots costs 500 microns, so even a
# short run has a visible price.
PRICE = str(3_600 * 1_000_000)


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    root = tmp_path_factory.mktemp("e2e-money")
    env = isolated_env(root)
    env["RGRID_LOCAL_HOURLY_PRICE_MICRONS"] = PRICE
    env["RGRID_LIMIT_CHECK_S"] = "1"
    runner = Cli(env=env, home=root / "rgrid")
    started = runner("dev", "start", timeout=120)
    assert started.code == 0, started.stderr
    yield runner
    runner("dev", "stop", timeout=60)


def table_rows(text: str) -> dict[str, str]:
    """A borderless two-column table as label -> value (the value's first line)."""
    rows = {}
    for line in text.splitlines():
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(parts) == 2:
            rows[parts[0]] = parts[1]
    return rows


def test_a_run_is_priced_and_the_cost_report_reconciles_with_the_node_bill(
    priced: Cli, work: Path
) -> None:
    (work / "job.py").write_text("import time\ntime.sleep(0.3)\n# rgrid: no-cache\n")
    run = priced("run", "job.py", "--json", cwd=work)
    assert run.code == 0, run.stderr
    result = run.json()
    assert isinstance(result, dict)
    assert result["cost_microns"] >= 300 * 500  # at least its 0.3 s of slot time

    status = priced("status", result["id"], cwd=work)
    assert "provisional" in status.stdout  # the node still runs: its hour is open

    report = priced("cost", "--json", cwd=work).json()
    assert isinstance(report, dict)
    assert report["executions_microns"] + report["idle_microns"] == report["bill_microns"]
    assert report["bill_microns"] == int(PRICE)  # one node, one started hour
    mine = [e for e in report["executions"] if e["execution_id"] == result["id"]]
    assert mine[0]["cost_microns"] == result["cost_microns"]

    breakdown = priced("cost", result["id"], cwd=work)
    assert breakdown.code == 0, breakdown.stderr
    rows = table_rows(breakdown.stdout)
    # The figures the user reads: the same share the run reported, its node, one hour.
    assert rows["runtime share"] == format_microns(result["cost_microns"])
    assert rows["node"].split("@")[0] == result["node"]  # the node (its life after the @)
    assert rows["node hours"] == "1"

    # The run is history now: an estimate for the same script says it came from it.
    estimate = priced("estimate", "job.py", "--files", "50", "--json", cwd=work).json()
    assert isinstance(estimate, dict)
    assert estimate["history"] >= 1 and estimate["runs"] == 50
    assert estimate["expected_microns"] >= 50 * 300 * 500
    assert "earlier successful run" in estimate["derivation"][0]

    by_script = priced("cost", "--by", "script", "--json", cwd=work).json()
    assert isinstance(by_script, dict)
    groups = by_script["groups"]
    assert (
        sum(g["executions_microns"] + g["idle_microns"] for g in groups)
        == (by_script["bill_microns"])
    )


def test_a_used_up_limit_refuses_new_runs_in_one_line_and_warns_once(
    priced: Cli, work: Path
) -> None:
    (work / "job.py").write_text("print('hi')\n# rgrid: no-cache\n")
    assert priced("run", "job.py", cwd=work).code == 0
    assert priced("cost", "set-limit", "€0.01/month", cwd=work).code == 0
    try:
        refused = priced("run", "job.py", cwd=work)
        assert refused.code == 125
        line = one_clear_line(refused.stderr)
        assert "refused" in line and "€0.01/month" in line and "set-limit" in line

        retry = priced("retry", "--force", "exec-anything", cwd=work)
        assert retry.code == 125 and "refused" in one_clear_line(retry.stderr)

        # The crossings show on the next command that gets through, once.
        first = priced("cost", cwd=work)
        assert "80% used" in first.stderr and "100% used" in first.stderr
        again = priced("cost", cwd=work)
        assert "% used" not in again.stderr
    finally:
        assert priced("cost", "remove-limit", cwd=work).code == 0
    assert priced("run", "job.py", cwd=work).code == 0


def test_a_budget_below_the_estimate_starts_nothing(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env["RGRID_LOCAL_HOURLY_PRICE_MICRONS"] = PRICE
    cli = Cli(env=env, home=tmp_path / "rgrid")
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "job.py").write_text("print('hi')\n")
    for index in range(3):
        (work / "data" / f"{index}.txt").write_text(str(index))

    for args in (
        ["run", "job.py", "--budget", "2.50", "--timeout", "60"],
        ["run", "job.py", "--batch", "data/*.txt", "--budget", "€2.50", "--timeout", "60"],
    ):
        result = cli(*args, cwd=work)
        assert result.code == 125
        line = one_clear_line(result.stderr)
        assert "above the budget €2.50" in line and "rgrid estimate" in line

    # Nothing was uploaded and nothing started: no stack, no stored files, no executions.
    assert not (tmp_path / "rgrid" / "dev" / "stack.json").exists()
    storage = tmp_path / "rgrid" / "storage"
    assert not storage.exists() or not any(p.is_file() for p in storage.rglob("*"))
    listed = cli("list", "--json", cwd=work)
    assert listed.code == 0 and listed.json() == []

    estimate = cli("estimate", "job.py", "--files", "3", "--timeout", "60", cwd=work)
    assert estimate.code == 0
    assert "no earlier runs" in estimate.stdout and "nothing was started" in estimate.stdout
