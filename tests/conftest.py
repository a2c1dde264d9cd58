"""Shared test settings: seeded, bounded hypothesis; and no test may leave a process behind."""

from __future__ import annotations

import os
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=200,
    suppress_health_check=(HealthCheck.too_slow,),
)
settings.load_profile("ci")


def _leftovers() -> list[int]:
    """Return live processes this test run forked (same session and command line): actor systems' processes."""
    me, sid = os.getpid(), os.getsid(0)
    cmdline = Path(f"/proc/{me}/cmdline").read_bytes()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            state = fields[0]
            if state == "Z" or os.getsid(pid) != sid:
                continue
            if (entry / "cmdline").read_bytes() == cmdline:
                found.append(pid)
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.fixture(autouse=True)
def no_process_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Kill, and report as a warning, any actor-system process still alive after a test's own shutdown.

    Every test starts and stops its own actor systems, so none of their processes may outlive it;
    a process a restart created while its system was shutting down can (thespian-notes §2.7).
    """
    yield
    if not {"actors", "e2e"} & set(request.node.path.parts):
        return  # only these start actor systems; a /proc scan costs ~5 ms
    orphans = _leftovers()
    deadline = time.monotonic() + 3.0  # a clean shutdown may still be finishing
    while orphans and time.monotonic() < deadline:
        time.sleep(0.05)
        orphans = _leftovers()
    for pid in orphans:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if orphans:
        warnings.warn(f"{request.node.nodeid} left {len(orphans)} actor process(es) running {orphans}; killed them",
                      stacklevel=1)


_DEFAULT_JOURNAL = Path(__file__).resolve().parent.parent / "var" / "state" / "journal.sqlite"


@pytest.fixture(autouse=True)
def no_journal_in_the_repository(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that journals into the repository's default state directory (var/state).

    A test's config must point `system.state_dir` into its tmp_path: a shared journal would carry
    one test's groups and positions into the next test's whole-system start.
    """
    existed = _DEFAULT_JOURNAL.exists()
    yield
    if not existed and _DEFAULT_JOURNAL.exists():
        for leftover in _DEFAULT_JOURNAL.parent.glob("journal.sqlite*"):
            leftover.unlink(missing_ok=True)
        pytest.fail(f"{request.node.nodeid} wrote the journal {_DEFAULT_JOURNAL}: give its config a "
                    "system.state_dir under tmp_path", pytrace=False)
