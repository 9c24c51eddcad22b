"""`saessak data fetch`: download + unpack into the cache, idempotent, offline (fake apt-get)."""

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from saessak.cli import main
from saessak.data import cache
from saessak.errors import UserError

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


def _make_deb(tmp: Path, package: str) -> Path:
    """A real .deb built with dpkg-deb, holding one Korean HTML page and a copyright file."""
    src = tmp / f"src-{package}"
    (src / "DEBIAN").mkdir(parents=True)
    (src / "DEBIAN/control").write_text(f"Package: {package}\nVersion: 1.2-3\nArchitecture: all\n"
                                        "Maintainer: t <t@example.org>\nDescription: test\n")
    doc = src / "usr/share/doc" / package
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Files: *\nLicense: MPL-2.0\n")
    deb = tmp / "debs" / f"{package}_1.2-3_all.deb"
    deb.parent.mkdir(exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(src), str(deb)], check=True, capture_output=True)
    return deb


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """`apt-get download` that copies prebuilt .debs; `pip download` that writes a small wheel."""
    for pkg in cache.DEBIAN_PACKAGES:
        _make_deb(tmp_path, pkg)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    (bin_dir / "apt-get").write_text(
        f"#!/bin/sh\necho \"$@\" >> {log}\n[ \"$1\" = download ] || exit 0\n"
        f"cp {tmp_path}/debs/\"$2\"_*.deb . \n")
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SAESSAK_CACHE", str(tmp_path / "cache"))

    real_run = cache._run

    def run(cmd, cwd=None):
        if "pip" in cmd and "download" in cmd:
            dest = Path(cmd[cmd.index("-d") + 1])
            with zipfile.ZipFile(dest / "konlpy-0.6.0-py2.py3-none-any.whl", "w") as z:
                z.writestr("konlpy/data/corpus/kolaw/constitution.txt", "대한민국헌법\n")
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return real_run(cmd, cwd)

    monkeypatch.setattr(cache, "_run", run)
    return log


def test_fetch_unpacks_records_and_is_idempotent(fake_tools, tmp_path, capsys):
    assert main(["data", "fetch"]) == 0
    deb = cache.load_deb("libreoffice-help-ko")
    assert deb.version == "1.2-3" and len(deb.deb_sha256) == 64
    assert (deb.root / "usr/share/doc/libreoffice-help-ko/copyright").read_text().startswith("Files: *")
    wheel = cache.load_konlpy_wheel()
    assert zipfile.ZipFile(wheel.wheel).read("konlpy/data/corpus/kolaw/constitution.txt").decode() == "대한민국헌법\n"
    calls = fake_tools.read_text().splitlines()
    assert calls == [f"download {p}" for p in cache.DEBIAN_PACKAGES]

    assert main(["data", "fetch"]) == 0  # cached: no new apt-get call
    assert fake_tools.read_text().splitlines() == calls
    assert "cached: libreoffice-help-ko 1.2-3" in capsys.readouterr().err


def test_fetch_retries_after_apt_update_then_fails_clearly(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n"
                                     "[ \"$1\" = download ] && { echo 'E: Unable to locate package' >&2; exit 100; }\n"
                                     "exit 0\n")
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SAESSAK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="apt-get download libreoffice-help-ko: failed"):
        cache.fetch_deb("libreoffice-help-ko")
    assert log.read_text().splitlines() == ["download libreoffice-help-ko", "update -qq",
                                            "download libreoffice-help-ko"]
    assert not (tmp_path / "cache/debs/libreoffice-help-ko").exists()  # nothing half-fetched left


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SAESSAK_CACHE", str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SAESSAK_CACHE")
    assert cache.cache_dir() == Path.home() / ".cache" / "saessak"
