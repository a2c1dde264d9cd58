"""`python -m bench.chaos` refuses a --work directory a previous run left its journal in."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import chaos


def test_a_work_directory_holding_a_previous_run_is_refused_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "journal.sqlite").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_:
        chaos.main(["--seconds", "1", "--work", str(tmp_path)])
    assert exit_.value.code == 2
    assert f"--work {tmp_path} is not empty" in capsys.readouterr().err
