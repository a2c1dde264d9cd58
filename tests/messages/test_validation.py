"""Admin commands from outside the system are checked field by field before anything acts on them."""

from __future__ import annotations

import pytest

from messages import AdminQuery, Flatten, GetStatus, Halt, LogLevel, QueryKind, SetLogLevel, Shutdown
from messages.validation import admin_problems


@pytest.mark.parametrize("command", [
    Halt(reason="end of day"), Halt(reduce_only=True), GetStatus(), Shutdown(reason=""),
    AdminQuery(what=QueryKind.PNL, symbol="AAPL", limit=10), SetLogLevel(level=LogLevel.DEBUG, key="AAPL"),
    Flatten(symbol="", token="t"),
])
def test_well_formed_admin_commands_have_no_problems(command: object) -> None:
    assert admin_problems(command) == []


@pytest.mark.parametrize(("command", "expected"), [
    (Halt(reason=5), "Halt.reason = 5: expected str"),
    (Halt(reduce_only="yes"), "Halt.reduce_only = 'yes': expected bool"),
    (AdminQuery(what="positions"), "AdminQuery.what = 'positions': expected QueryKind"),
    (AdminQuery(what=QueryKind.ORDERS, limit=True), "AdminQuery.limit = True: expected int"),
    (SetLogLevel(level="DEBUG"), "SetLogLevel.level = 'DEBUG': expected LogLevel"),
    (GetStatus(token=None), "GetStatus.token = None: expected str"),
    ("halt", "str is not an admin command"),
    (object(), "object is not an admin command"),
])
def test_malformed_admin_commands_name_the_field_and_the_expected_type(command: object, expected: str) -> None:
    assert expected in admin_problems(command)
