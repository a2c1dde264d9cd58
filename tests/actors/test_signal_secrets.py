"""The signal API credential never shows: not in logs, rejections, status or the journal, whatever the server echoes back."""

from __future__ import annotations

from pathlib import Path

import pytest
from thespian.actors import ActorSystem

from journal.store import Journal

from tests.actors.test_signal_source import (  # noqa: F401 (asys, env and server are fixtures)
    SECRET,
    Reply,
    Rig,
    SignalServer,
    _config,
    _http,
    _signal,
    _wait_for,
    asys,
    env,
    server,
)

pytestmark = pytest.mark.timeout(60)


def _journaled_signals(rig: Rig) -> str:
    with Journal.open(rig.config.journal_path, readonly=True) as journal:
        return "\n".join(map(repr, journal.recent_signals()))


def test_credential_echoed_in_a_rejected_item_and_the_cursor_is_masked_everywhere(
        asys: ActorSystem, server: SignalServer, tmp_path: Path) -> None:
    # A server that echoes the request back: the credential as a bad item's id and in the cursor.
    server.queue(Reply(body={"signals": [_signal(SECRET, confidence="high"), _signal("g1")],
                             "cursor": f"c-{SECRET}"}))
    rig = Rig(asys, _config(tmp_path, _http(server.url())))

    (good,) = rig.signals(1)
    (rejected,) = rig.rejected(1)
    detail = rig.wait_status("last poll ok")
    _wait_for(lambda: len(server.seen()) >= 2, "a poll with the echoed cursor")

    assert good.source_id == "g1" and rejected.code == "WRONG_TYPE"
    assert (rejected.source_id, rejected.symbol) == ("***", "AAPL")
    assert "cursor c-***" in detail
    shown = {"log": rig.log_text(), "status": detail, "reason": rejected.reason, "raw": rejected.raw,
             "source_id": rejected.source_id, "journaled signals": _journaled_signals(rig)}
    assert "s3cr3t" in SECRET
    assert [where for where, text in shown.items() if "s3cr3t" in text] == []
    assert "rejected:***:" in shown["journaled signals"]
    assert "signal *** rejected (WRONG_TYPE)" in shown["log"] and "source starts" in shown["log"]
    # The server still gets its cursor back (the journaled resume point keeps it as sent).
    assert server.seen()[1].query["cursor"] == [f"c-{SECRET}"]


def test_credential_echoed_in_an_accepted_signal_id_is_masked_in_the_log(
        asys: ActorSystem, server: SignalServer, tmp_path: Path) -> None:
    server.queue(Reply(body=[_signal(f"a-{SECRET}")]))
    rig = Rig(asys, _config(tmp_path, _http(server.url())))

    (signal,) = rig.signals(1)

    assert signal.source_id == f"a-{SECRET}"  # the strategy gets the id as sent (it identifies the signal)
    text = rig.log_text()
    assert "signal a-*** AAPL LONG 0.8 accepted" in text and "s3cr3t" not in text
