"""The download cache for corpus sources: `${SAESSAK_CACHE:-~/.cache/saessak}`.

Debian packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into the
cache (never installed system-wide); the konlpy wheel with `pip download --no-deps`, and read as
a zip (importing konlpy needs Java). Each fetched item gets a `fetched.json` written last, so a
half-done fetch is redone and a finished one is skipped in a few milliseconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from saessak.errors import UserError
from saessak.io import atomic_dir, file_sha256, read_json, write_json

# Every Debian package any source may read; all are fetched so opt-in sources work offline later.
DEBIAN_PACKAGES = ("libreoffice-help-ko", "installation-guide-amd64", "debian-faq-ko")
KONLPY_REQUIREMENT = "konlpy==0.6.0"


def cache_dir() -> Path:
    return Path(os.environ.get("SAESSAK_CACHE") or Path.home() / ".cache" / "saessak")


@dataclass(frozen=True)
class FetchedDeb:
    package: str
    version: str
    deb_file: str
    deb_sha256: str
    root: Path  # the unpacked file system tree


@dataclass(frozen=True)
class FetchedWheel:
    requirement: str
    wheel: Path
    wheel_sha256: str


def _deb_dir(package: str) -> Path:
    return cache_dir() / "debs" / package


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError(f"{cmd[0]}: command not found (needed to fetch corpus sources)") from None


def _apt_download(package: str, dest: Path) -> Path:
    proc = _run(["apt-get", "download", package], cwd=dest)
    if proc.returncode != 0:
        # Most often the package lists are missing (a fresh container): update once, then retry.
        update = _run(["apt-get", "update", "-qq"])
        proc = _run(["apt-get", "download", package], cwd=dest)
        if proc.returncode != 0:
            detail = (proc.stderr or update.stderr).strip().splitlines()[-1:] or ["unknown error"]
            raise UserError(f"apt-get download {package}: failed ({detail[0]})")
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if not debs:
        raise UserError(f"apt-get download {package}: no .deb file appeared in {dest}")
    return debs[-1]


def fetch_deb(package: str, force: bool = False) -> FetchedDeb:
    """Download and unpack one Debian package into the cache (skipped when already there)."""
    folder = _deb_dir(package)
    marker = folder / "fetched.json"
    if marker.exists() and not force:
        return load_deb(package)
    with atomic_dir(folder) as tmp:
        deb = _apt_download(package, tmp)
        proc = _run(["dpkg-deb", "-x", str(deb), str(tmp / "root")])
        if proc.returncode != 0:
            raise UserError(f"dpkg-deb -x {deb.name}: failed ({proc.stderr.strip()})")
        version = _run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()
        write_json(tmp / "fetched.json", {
            "package": package, "version": version, "deb_file": deb.name, "deb_sha256": file_sha256(deb),
        })
    return load_deb(package)


def load_deb(package: str) -> FetchedDeb:
    folder = _deb_dir(package)
    info = read_json(folder / "fetched.json")
    return FetchedDeb(info["package"], info["version"], info["deb_file"], info["deb_sha256"], folder / "root")


def deb_is_cached(package: str) -> bool:
    return (_deb_dir(package) / "fetched.json").exists()


def _wheel_dir() -> Path:
    return cache_dir() / "wheels" / "konlpy"


def fetch_konlpy_wheel(force: bool = False) -> FetchedWheel:
    folder = _wheel_dir()
    if (folder / "fetched.json").exists() and not force:
        return load_konlpy_wheel()
    with atomic_dir(folder) as tmp:
        with tempfile.TemporaryDirectory() as dl:
            proc = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                         "-q", "-d", dl, KONLPY_REQUIREMENT])
            wheels = sorted(Path(dl).glob("konlpy-*.whl"))
            if proc.returncode != 0 or not wheels:
                tail = proc.stderr.strip().splitlines()[-1:] or ["no wheel downloaded"]
                raise UserError(f"pip download {KONLPY_REQUIREMENT}: failed ({tail[0]})")
            shutil.copy2(wheels[0], tmp / wheels[0].name)
        wheel = tmp / wheels[0].name
        write_json(tmp / "fetched.json", {
            "requirement": KONLPY_REQUIREMENT, "wheel_file": wheel.name, "wheel_sha256": file_sha256(wheel),
        })
    return load_konlpy_wheel()


def load_konlpy_wheel() -> FetchedWheel:
    folder = _wheel_dir()
    info = read_json(folder / "fetched.json")
    return FetchedWheel(info["requirement"], folder / info["wheel_file"], info["wheel_sha256"])


def konlpy_is_cached() -> bool:
    return (_wheel_dir() / "fetched.json").exists()


def fetch_all(force: bool = False, log=print) -> dict:
    """Fetch every default and opt-in source into the cache; returns what is there."""
    out = {}
    for package in DEBIAN_PACKAGES:
        cached = deb_is_cached(package) and not force
        deb = fetch_deb(package, force=force)
        log(f"{'cached' if cached else 'fetched'}: {package} {deb.version}")
        out[package] = deb.version
    cached = konlpy_is_cached() and not force
    wheel = fetch_konlpy_wheel(force=force)
    log(f"{'cached' if cached else 'fetched'}: {wheel.wheel.name}")
    out["konlpy"] = wheel.wheel.name
    return out
