"""The node pool's decisions: when to add nodes, retire them before the next billing hour,
and declare them dead (pure functions the workflow calls)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rgrid.models.pool import NodeClassConfig, NodeState, PoolNode
from rgrid.workflows import pool_policy as policy

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
CONFIG = NodeClassConfig(slots=2, max_nodes=10)  # defaults: margin 300 s, dead after 120 s


def node(state: NodeState = NodeState.READY, age_s: float = 0, **fields: object) -> PoolNode:
    created = T0 - timedelta(seconds=age_s)
    values: dict[str, object] = {
        "ready_at": created + timedelta(seconds=60),
        "last_seen": T0,  # answered the last ping
        "slots": 2,
    }
    values.update(fields)
    return PoolNode(node_id="n", state=state, created_at=created, **values)  # type: ignore[arg-type]


def test_an_idle_node_is_kept_while_more_than_the_margin_of_its_hour_remains() -> None:
    assert not policy.should_retire(node(age_s=54 * 60), T0, CONFIG, backlog=0)


def test_an_idle_node_is_retired_when_five_minutes_or_less_remain_in_its_hour() -> None:
    assert policy.should_retire(node(age_s=55 * 60), T0, CONFIG, backlog=0)
    assert policy.should_retire(node(age_s=59 * 60 + 59), T0, CONFIG, backlog=0)


def test_the_retire_window_comes_back_in_every_billed_hour() -> None:
    assert not policy.should_retire(node(age_s=3600 + 60), T0, CONFIG, backlog=0)
    assert policy.should_retire(node(age_s=2 * 3600 + 56 * 60), T0, CONFIG, backlog=0)


def test_a_busy_node_is_never_retired_even_in_the_window() -> None:
    assert not policy.should_retire(node(age_s=57 * 60, in_use=1), T0, CONFIG, backlog=0)


def test_an_idle_node_in_the_window_stays_when_work_is_waiting() -> None:
    assert not policy.should_retire(node(age_s=57 * 60), T0, CONFIG, backlog=3)


def test_a_draining_or_too_old_node_goes_as_soon_as_it_is_idle() -> None:
    assert policy.should_retire(node(NodeState.DRAINING, age_s=600), T0, CONFIG, backlog=5)
    assert policy.should_retire(node(age_s=24 * 3600 + 600), T0, CONFIG, backlog=5)
    assert not policy.should_retire(node(age_s=24 * 3600 + 600, in_use=2), T0, CONFIG, backlog=0)


def test_seconds_left_in_the_hour_count_from_server_creation() -> None:
    created = T0 - timedelta(minutes=50)
    assert policy.seconds_left_in_hour(created, T0) == 600
    assert policy.seconds_left_in_hour(T0, T0) == 3600


def test_a_silent_node_is_dead_only_when_the_api_also_says_it_is_not_running() -> None:
    silent = node(age_s=3600, last_seen=T0 - timedelta(seconds=120))
    assert not policy.is_dead(silent, T0, CONFIG, "running")  # one signal is not enough
    assert policy.is_dead(silent, T0, CONFIG, "off")
    assert policy.is_dead(silent, T0, CONFIG, "missing")


def test_a_node_that_answered_recently_is_not_dead_whatever_the_api_says() -> None:
    recent = node(age_s=3600, last_seen=T0 - timedelta(seconds=119))
    assert not policy.is_dead(recent, T0, CONFIG, "off")


def test_a_booting_node_is_given_up_after_the_boot_timeout() -> None:
    booting = node(NodeState.PROVISIONING, age_s=CONFIG.boot_timeout_s, ready_at=None)
    assert policy.boot_timed_out(booting, T0, CONFIG)
    assert not policy.boot_timed_out(node(NodeState.PROVISIONING, age_s=60), T0, CONFIG)


def test_nodes_are_added_for_the_backlog_beyond_coming_and_free_slots() -> None:
    assert policy.nodes_to_create(0, [], CONFIG, T0) == 0
    assert policy.nodes_to_create(5, [], CONFIG, T0) == 3  # 2 slots each
    booting = node(NodeState.PROVISIONING, ready_at=None)
    assert policy.nodes_to_create(5, [booting], CONFIG, T0) == 2
    half_free = node(age_s=600, in_use=1)
    assert policy.nodes_to_create(1, [half_free], CONFIG, T0) == 0


def test_no_more_than_max_nodes_are_ever_wanted() -> None:
    live = [node(age_s=600, in_use=2) for _ in range(9)]
    assert policy.nodes_to_create(100, live, CONFIG, T0) == 1
    gone = [node(NodeState.DELETED, age_s=600) for _ in range(20)]
    assert policy.nodes_to_create(4, gone, CONFIG, T0) == 2


def test_a_node_that_just_became_ready_counts_as_coming_while_the_backlog_stat_lags() -> None:
    fresh = node(age_s=60, ready_at=T0 - timedelta(seconds=1), in_use=2)
    assert policy.nodes_to_create(2, [fresh], CONFIG, T0) == 0
    settled = node(age_s=60, ready_at=T0 - timedelta(seconds=30), in_use=2)
    assert policy.nodes_to_create(2, [settled], CONFIG, T0) == 1


def test_a_busy_node_that_stopped_answering_is_retired_in_its_window_though_it_runs() -> None:
    hung = node(age_s=57 * 60, in_use=2, last_seen=T0 - timedelta(seconds=300))
    assert not policy.is_dead(hung, T0, CONFIG, "running")
    assert policy.should_retire(hung, T0, CONFIG, backlog=0)


def test_a_node_drained_right_after_it_became_ready_still_counts_for_the_lagging_backlog() -> None:
    drained = node(NodeState.DRAINING, age_s=60, ready_at=T0 - timedelta(seconds=2), in_use=2)
    assert policy.nodes_to_create(2, [drained], CONFIG, T0) == 0


def test_a_standing_backlog_counts_once_two_looks_agree_and_new_demand_at_once() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert policy.backlog_to_serve(3, 0, 0, now, None) == 0
    assert policy.backlog_to_serve(3, 2, 0, now, None) == 2
    assert policy.backlog_to_serve(0, 0, 1, now, None) == 1


def test_just_after_a_node_that_took_claims_is_destroyed_only_new_demand_counts() -> None:
    # The statistic still shows the claims the destroyed node took: no node for them.
    gone = datetime(2026, 1, 1, tzinfo=UTC)
    soon = gone + timedelta(seconds=policy.BACKLOG_STATS_LAG_S - 1)
    assert policy.backlog_to_serve(1, 1, 0, soon, gone) == 0
    assert policy.backlog_to_serve(1, 1, 2, soon, gone) == 2
    later = gone + timedelta(seconds=policy.BACKLOG_STATS_LAG_S)
    assert policy.backlog_to_serve(1, 1, 0, later, gone) == 1
