"""The suite's own rules (tests/conftest.py): in CI a browser test that skips is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FAKE = '''
import pytest

pytestmark = pytest.mark.browser


@pytest.mark.skipif(True, reason="/usr/bin/chromium is not installed")
def test_page():
    pass


@pytest.fixture
def browser():
    pytest.importorskip("no_such_playwright_module")


def test_with_browser(browser):
    pass


@pytest.mark.slow
def test_slow_page():
    pass


def test_not_skipped():
    pass
'''


def _pytest(tmp_path, ci: str | None):
    test = tmp_path / "test_fake_browser.py"
    test.write_text(FAKE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    # The repo's conftest as a plugin, its pytest settings (--strict-markers knows "browser").
    return subprocess.run([sys.executable, "-m", "pytest", str(test), "-p", "tests.conftest", "-c",
                           str(REPO / "pyproject.toml"), "--rootdir", str(REPO), "-q", "-p", "no:cacheprovider"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_browser_skips_fail_in_ci_and_stay_skips_elsewhere(tmp_path):
    local = _pytest(tmp_path, None)
    assert local.returncode == 0, local.stdout[-2000:]
    assert "1 passed, 3 skipped" in local.stdout

    ci = _pytest(tmp_path, "true")
    assert ci.returncode == 1, ci.stdout[-2000:]
    # both ways a browser test can skip fail; a slow test left out without --runslow stays skipped
    assert "1 passed, 1 skipped, 2 errors" in ci.stdout, ci.stdout[-2000:]
    assert "browser test skipped in CI (/usr/bin/chromium is not installed)" in ci.stdout
    assert "no_such_playwright_module" in ci.stdout


def test_what_counts_as_ci(monkeypatch):
    from tests.conftest import in_ci

    for value, want in (("true", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("", False)):
        monkeypatch.setenv("CI", value)
        assert in_ci() is want, value
    monkeypatch.delenv("CI")
    assert in_ci() is False
