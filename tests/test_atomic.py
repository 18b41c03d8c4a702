"""tbench's own run files (tbench merge, store export) are written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_tbench.core import atomic
from pytest_tbench.core.atomic import write_text_atomic


def test_a_write_cut_short_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"old": true}')

    def cut(fd: int) -> None:
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(atomic.os, "fsync", cut)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic(path, '{"new": true, "long": "' + "x" * 100_000 + '"}')
    assert path.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
    monkeypatch.undo()
    write_text_atomic(tmp_path / "sub" / "new.json", "{}")
    assert (tmp_path / "sub" / "new.json").read_text() == "{}"
