"""Breaker transitions are kept in the database, once each, and the history stays bounded."""

import pytest
from django.test import override_settings

from flexiai_django import breaker, history
from flexiai_django.breakers.state import BreakerState, State
from flexiai_django.models import BreakerTransition
from flexiai_django.worker import worker_id

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty() -> None:
    BreakerTransition.objects.all().delete()


def moves() -> list[tuple[str, str, str]]:
    history.flush()
    return [(t.breaker, t.from_state, t.to_state)
            for t in BreakerTransition.objects.order_by("id")]


def test_each_state_change_is_one_row_with_its_worker():
    breaker("llm:primary").force_open()
    breaker("llm:primary").reset()
    assert moves() == [("llm:primary", "closed", "forced_open"),
                       ("llm:primary", "forced_open", "closed")]
    assert set(BreakerTransition.objects.values_list("worker", flat=True)) == {worker_id()}


def test_a_trip_records_the_error_kind_and_failure_count():
    b = breaker("payments", failure_threshold=2)

    def fail() -> None:
        raise TimeoutError

    for _ in range(2):
        with pytest.raises(TimeoutError):
            b.call(fail)
    history.flush()
    row = BreakerTransition.objects.get()
    assert (row.from_state, row.to_state, row.failures, row.error) == (
        "closed", "open", 2, "TimeoutError")
    assert row.provider is None


def test_failures_that_do_not_change_the_state_are_not_history():
    b = breaker("llm:primary", failure_threshold=5)

    def fail() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        b.call(fail)
    assert moves() == []


@override_settings(FLEXIAI={"HISTORY_LIMIT": 3})
def test_the_oldest_rows_are_pruned_beyond_the_limit():
    for _ in range(3):
        breaker("llm:primary").force_open()
        breaker("llm:primary").reset()
    assert moves() == [("llm:primary", "forced_open", "closed"),
                       ("llm:primary", "closed", "forced_open"),
                       ("llm:primary", "forced_open", "closed")]


@override_settings(FLEXIAI={"HISTORY_LIMIT": 0})
def test_a_limit_of_zero_keeps_no_history():
    breaker("llm:primary").force_open()
    assert moves() == []


def test_a_database_error_is_logged_without_the_row_and_never_raised(caplog):
    row = history.row_for("llm:primary", BreakerState(),
                          BreakerState(state=State.OPEN, last_error="timeout"))
    history.write({**row, "failures": -1}, 10)  # violates the column's CHECK constraint
    assert "breaker history not written (IntegrityError)" in caplog.text
    assert "timeout" not in caplog.text
    assert moves() == []
