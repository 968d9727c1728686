"""What a turn's error tells a client about faults of our own infrastructure."""

from __future__ import annotations

from shared.errors import ServiceUnavailable


def test_a_turn_failed_by_a_database_outage_says_it_can_be_sent_again() -> None:
    """Regression: a turn failed by dropped database connections (tests/chaos/
    test_postgres_faults.py) carried ``retryable: false``, though the outage was transient."""
    error = ServiceUnavailable("the database is unavailable; retry shortly").to_dict()
    assert error == {
        "code": "service_unavailable",
        "message": "the database is unavailable; retry shortly",
        "retryable": True,
    }
