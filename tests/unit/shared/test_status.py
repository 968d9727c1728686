"""The lifecycle of a turn is one table: what it allows, and what it refuses."""

from __future__ import annotations

import pytest

from shared.status import (
    FINISHED,
    IN_PROGRESS,
    OPEN,
    TRANSITIONS,
    IllegalTransition,
    TurnStatus,
    predecessors,
    transition,
)


def test_open_statuses_lead_somewhere_and_finished_ones_nowhere() -> None:
    assert {TurnStatus.QUEUED, TurnStatus.RUNNING, TurnStatus.AWAITING_APPROVAL} == OPEN
    assert {TurnStatus.COMPLETED, TurnStatus.FAILED, TurnStatus.CANCELLED} == FINISHED
    assert {TurnStatus.RUNNING, TurnStatus.AWAITING_APPROVAL} == IN_PROGRESS
    assert all(not TRANSITIONS[status] for status in FINISHED)


def test_a_turn_completes_only_from_running_and_is_cancellable_while_open() -> None:
    assert predecessors(TurnStatus.COMPLETED) == (TurnStatus.RUNNING,)
    assert set(predecessors(TurnStatus.CANCELLED)) == OPEN
    assert set(predecessors(TurnStatus.QUEUED)) == {
        TurnStatus.RUNNING,
        TurnStatus.AWAITING_APPROVAL,
    }
    assert predecessors(TurnStatus.AWAITING_APPROVAL) == (TurnStatus.RUNNING,)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("completed", TurnStatus.RUNNING),
        ("cancelled", TurnStatus.QUEUED),
        ("queued", TurnStatus.AWAITING_APPROVAL),
        ("awaiting_approval", TurnStatus.COMPLETED),
    ],
)
def test_a_change_the_table_does_not_allow_is_refused(current: str, new: TurnStatus) -> None:
    with pytest.raises(IllegalTransition):
        transition(current, new)


def test_an_allowed_change_answers_the_new_status() -> None:
    assert transition("awaiting_approval", TurnStatus.QUEUED) is TurnStatus.QUEUED
    assert transition("queued", TurnStatus.CANCELLED) == "cancelled"  # stored as its value
