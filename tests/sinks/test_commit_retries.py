"""A Delta commit that loses a race is retried on a fresh try, a bounded number of times."""

import pytest
from deltalake.exceptions import CommitFailedError

from pipeline.errors import SinkError
from sinks.maintenance import with_retries


class Racy:
    """An action whose first ``losses`` calls lose the commit race."""

    def __init__(self, losses: int) -> None:
        self.losses = losses
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.losses:
            raise CommitFailedError(f"concurrent commit #{self.calls}")
        return "committed"


def test_a_lost_race_is_retried_until_it_commits() -> None:
    action = Racy(losses=2)
    assert with_retries("compact t", 2, action) == "committed"
    assert action.calls == 3


def test_out_of_retries_is_a_sink_error_naming_the_last_conflict() -> None:
    action = Racy(losses=5)
    with pytest.raises(
        SinkError, match=r"compact t: still conflicting after 1 retries: concurrent commit #2"
    ):
        with_retries("compact t", 1, action)
    assert action.calls == 2


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("bad predicate")

    with pytest.raises(ValueError, match="bad predicate"):
        with_retries("forget t", 3, broken)
    assert calls == [1]
