"""Atomic writes give files and folders the mode a plain open()/mkdir() would (the umask's), not
the private 0600/0700 of the temporary names they are built under: a run folder, a report or an
export is shared with the machine's other users and containers (vLLM, llama.cpp) like any file."""

from __future__ import annotations

import os
import stat

import pytest

from saessak.io import atomic_dir, write_json, write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_files_and_folders_follow_the_umask(tmp_path, umask_022):
    write_json(tmp_path / "report.json", {"a": 1})
    assert _mode(tmp_path / "report.json") == 0o644
    with atomic_dir(tmp_path / "hf") as d:
        write_text(d / "config.json", "{}")
    assert _mode(tmp_path / "hf") == 0o755 and _mode(tmp_path / "hf" / "config.json") == 0o644
    os.umask(0o077)
    write_text(tmp_path / "private.txt", "x")
    assert _mode(tmp_path / "private.txt") == 0o600


def test_a_replaced_file_keeps_its_mode(tmp_path, umask_022):
    target = tmp_path / "results.json"
    write_json(target, {"v": 1})
    os.chmod(target, 0o640)
    write_json(target, {"v": 2})
    assert _mode(target) == 0o640 and target.read_text().strip().endswith("}")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
