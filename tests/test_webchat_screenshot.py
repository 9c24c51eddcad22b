"""scripts/webchat_screenshot.py, the README's picture, keeps working: on the micro run it serves the
run's model, asks held-out task items of the run's RL families in the page, grades the replies the
page shows, and writes one PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serve_util import REPO

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")]


def test_screenshot_of_a_run(micro_run, tmp_path):
    run, _ = micro_run
    out = tmp_path / "shot.png"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "webchat_screenshot.py"), "--model", str(run),
                        "--out", str(out), "--n", "1", "--max-level", "1", "--max-tokens", "8", "--chat", "안녕하세요"],
                       capture_output=True, text=True, timeout=240, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert json.loads(out.with_suffix(".json").read_text()) == summary  # the data beside the picture
    from saessak.tasks import registry

    graded = [s for s in summary["items"] if s["task"]]
    # one level-1 test item per family of the micro recipe's RL stage, then the free prompt
    assert [s["task"] for s in graded] == list(registry.FAMILIES)
    assert all(s["level"] == 1 and s["id"].startswith(f"{s['task']}-test-") for s in graded)
    assert summary["items"][-1] == {**summary["items"][-1], "task": None, "prompt": "안녕하세요", "correct": None}
    # the grade printed is the task checker's verdict on the reply the page showed
    for s in graded:
        item = next(i for i in registry.sample(s["task"], "test", 1, 0, 1))
        assert s["correct"] == registry.grade(item, s["reply"])["correct"]
    assert summary["correct"] == sum(s["correct"] for s in graded) and summary["graded"] == len(graded)
    from PIL import Image

    with Image.open(out) as image:  # a header plus one crop per item: taller than one viewport
        assert image.height > 420 and image.width >= 400


def test_missing_model_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "webchat_screenshot.py"), "--model",
                        str(tmp_path / "nope")], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode != 0 and "no such folder" in r.stderr and "Traceback" not in r.stderr
