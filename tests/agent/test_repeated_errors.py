"""The agent's log of a failure that repeats (a CIB unreachable for minutes): once, then with its count."""

from __future__ import annotations

import logging

import pytest

from controller.agent import RepeatedErrors


def test_a_repeated_error_is_logged_once_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.repeated")
    errors = RepeatedErrors(log)
    with caplog.at_level(logging.ERROR, logger="test.repeated"):
        assert errors.failed("pass: error cibadmin: Could not connect to the CIB", None) is True
        for _ in range(11):
            assert errors.failed("pass: error cibadmin: Could not connect to the CIB", None) is False
        errors.ok()
        errors.ok()  # nothing more to say
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "pass: error cibadmin: Could not connect to the CIB",
        "still failing, 10 times so far: pass: error cibadmin: Could not connect to the CIB",
        "the previous error repeated 12 times: pass: error cibadmin: Could not connect to the CIB"]


def test_a_different_error_is_logged_and_closes_the_count(caplog: pytest.LogCaptureFixture) -> None:
    errors = RepeatedErrors(logging.getLogger("test.repeated2"))
    with caplog.at_level(logging.ERROR, logger="test.repeated2"):
        errors.failed("a", None)
        errors.failed("a", None)
        assert errors.failed("b", None) is True
    assert [r.getMessage() for r in caplog.records] == ["a", "the previous error repeated 2 times: a", "b"]
