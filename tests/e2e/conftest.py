"""e2e fixtures: `launch` starts a whole system against a simulator and stops it after the test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import System, SymbolSpec, start_system


@pytest.fixture
def launch(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Callable[..., System]:
    """Return a function starting a system on `symbols` (SymbolSpecs); each is stopped in a finalizer."""
    monkeypatch.setenv("THESPIAN_BASE_IPADDR", "127.0.0.1")
    def start(symbols: tuple[SymbolSpec, ...], **kwargs: Any) -> System:
        system = start_system(tmp_path / f"system{len(started)}", symbols, **kwargs)
        started.append(system)
        return system

    def stop_all() -> None:
        problems = []
        for system in started:
            try:
                system.close()
            except AssertionError as exc:
                problems.append(str(exc))
        assert not problems, problems

    started: list[System] = []
    request.addfinalizer(stop_all)
    return start
