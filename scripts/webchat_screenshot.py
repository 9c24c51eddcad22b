"""The README's web-chat screenshot, taken from a real run: the run's model answers held-out task
items in the web page, and the script grades each reply with the task's own checker.

    .venv/bin/python scripts/webchat_screenshot.py --model runs/cpu-tiny --out docs/img/webchat.png

What it does: starts `saessak serve --model RUN` on a free loopback port, opens the page in
headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; it never downloads a browser),
sets temperature 0 and no system prompt (the tasks were trained without one), sends `--n` items of
each family the run's recipe trains (test split, seed `--seed`, levels 1..`--max-level`) and saves
the screenshot. Every prompt, reply and grade goes to a JSON file beside the PNG (same name,
`.json`) and to the last line on stdout, so the picture can be checked against what the model
really said (scripts/docs_figures.py lists them in the README). Nothing is picked by outcome: the items
are the first ones the suite draws for the seed, right or wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"


def pick_items(model: Path, n: int, seed: int, max_level: int, split: str) -> list[dict]:
    """`n` items per (family, level) of the families the run's RL stage trains (josa and spacing
    when the model is a bare checkpoint folder)."""
    from saessak import recipes
    from saessak.rl.config import GRPOConfig
    from saessak.runfolder import RunFolder
    from saessak.tasks import registry

    families = ["josa", "spacing"]
    run = RunFolder(model)
    if run.stage_dir("pretrain").is_dir():
        families = recipes.stage_config(GRPOConfig, run.preset(), "rl").families(registry)
    items = []
    for task in families:
        for level in range(1, max_level + 1):
            seen: set[str] = set()
            for item in registry.sample(task, split, 20 * n, seed, level):  # distinct items, as eval scores
                if len(seen) < n and str(item["prompt"]) not in seen:
                    seen.add(str(item["prompt"]))
                    items.append(item)
    return items


def stack(pngs: list[bytes], out: Path) -> None:
    """The per-item screenshots one under the other, in one PNG."""
    import io

    from PIL import Image

    images = [Image.open(io.BytesIO(b)).convert("RGB") for b in pngs]
    sheet = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    y = 0
    for image in images:
        sheet.paste(image, (0, y))
        y += image.height
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="run folder or checkpoint folder (as `saessak serve --model`)")
    ap.add_argument("--out", default=None, help="PNG to write (default: a temporary file, printed)")
    ap.add_argument("--n", type=int, default=1, help="items per family and level (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-level", type=int, default=3, help="levels 1..this are drawn (default 3, the levels cpu-tiny trains)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--chat", action="append", default=None, metavar="TEXT",
                    help="an ungraded free prompt shown after the task items (repeatable; default: a "
                         "greeting, to show what the model does outside its tasks; --chat '' for none)")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server and each reply")
    args = ap.parse_args(argv)

    model = Path(args.model)
    if not model.exists():
        raise SystemExit(f"error: --model {model}: no such folder")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"error: {CHROMIUM} is not installed (scripts/setup.sh installs it)")
    from playwright.sync_api import sync_playwright

    from saessak.io import write_json
    from saessak.tasks import registry
    from tests.serve_util import free_port, wait_healthy

    items = pick_items(model, args.n, args.seed, args.max_level, args.split)
    chats = [c for c in (args.chat if args.chat is not None else ["안녕하세요? 자기소개 해 주세요."]) if c]
    items += [{"task": None, "level": None, "id": f"chat-{i}", "prompt": c, "answer": None} for i, c in enumerate(chats)]
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp()) / "webchat.png"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
    server = subprocess.Popen(
        [sys.executable, "-m", "saessak", "serve", "--model", str(model), "--port", str(port), "--threads", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    shown = []
    try:
        try:
            wait_healthy(url, timeout=args.timeout, proc=server)
        except (RuntimeError, TimeoutError) as e:
            raise SystemExit(f"error: the server for {model} did not start: {e}") from None
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_context(locale="ko-KR", viewport={"width": 900, "height": 420}).new_page()
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('model-name').textContent.startsWith('모델: ')")
            for selector, value in (("#temperature", "0"), ("#system-prompt", ""),
                                    ("#max-tokens", str(args.max_tokens))):
                page.eval_on_selector(selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input'));"
                                                " el.dispatchEvent(new Event('change')); }", value)
            crops = []
            for i, item in enumerate(items):
                page.click("#new-chat")  # one conversation per item: the tasks are single-turn
                page.fill("#input", registry.prompt_messages(item)[-1]["content"] if item["task"] else item["prompt"])
                page.keyboard.press("Enter")
                page.wait_for_function("document.querySelectorAll('.message.assistant').length == 1"
                                       " && !document.getElementById('send').disabled", timeout=args.timeout * 1000)
                reply = page.locator(".message.assistant .body").first.inner_text()
                correct = bool(registry.grade(item, reply)["correct"]) if item["task"] else None
                shown.append({"task": item["task"], "level": item["level"], "id": item["id"],
                              "prompt": item["prompt"], "reply": reply, "answer": item["answer"],
                              "correct": correct})
                box = page.locator("#messages").bounding_box()  # the exchange, without the empty space under it
                end = page.locator(".message.assistant").first.bounding_box()
                crops.append(page.screenshot(clip={"x": box["x"], "y": box["y"], "width": box["width"],
                                                   "height": end["y"] + end["height"] + 12 - box["y"]}))
            stack([page.locator("main header").screenshot(), *crops], out)
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    graded = [s for s in shown if s["task"]]
    for s in shown:
        if s["task"]:
            mark = "O" if s["correct"] else "X"
            print(f"[{mark}] {s['task']} L{s['level']}: {s['prompt']!r} -> {s['reply']!r} (answer {s['answer']!r})")
        else:
            print(f"[ ] chat: {s['prompt']!r} -> {s['reply']!r}")
    summary = {"model": str(model), "screenshot": str(out), "date": time.strftime("%Y-%m-%d"), "items": shown,
               "correct": sum(s["correct"] for s in graded), "graded": len(graded)}
    # Beside the picture, what it shows as data: scripts/docs_figures.py lists it in the README.
    write_json(out.with_suffix(".json"), summary)
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
