"""The web chat page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from tests.serve_util import CliServer, make_checkpoint, train_demo_chat_model

CHROMIUM = "/usr/bin/chromium"
# The docs' picture (docs/img/webchat.png) is the speedrun's own model, taken by
# scripts/webchat_screenshot.py (tests/test_webchat_screenshot.py); the memorised demo here only
# tests the page's rendering and never replaces it.

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)"),
]

INJECTION = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>굵게</b>'


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        # executable_path: never let Playwright download a browser of its own
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def random_server(tmp_path_factory):
    work = tmp_path_factory.mktemp("webchat")
    # long replies to stop, from a model big enough that one takes seconds (the engine process decodes
    # the 2-layer test model's 4,000 tokens faster than the page can press 중지)
    ckpt = make_checkpoint(work / "ckpt", never_ends=True, max_position_embeddings=4096, hidden_size=256,
                           intermediate_size=704, num_hidden_layers=6)
    with CliServer(ckpt, work, "--served-model-name", "saessak-tiny") as srv:
        yield srv


def open_page(browser, base_url: str):
    context = browser.new_context(locale="ko-KR", viewport={"width": 1200, "height": 760})
    page = context.new_page()
    page.goto(base_url + "/")
    page.wait_for_function("document.getElementById('model-name').textContent.startsWith('모델: ')")
    return page


def set_value(page, selector: str, value: str) -> None:
    page.eval_on_selector(selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input'));"
                                    " el.dispatchEvent(new Event('change')); }", value)


def wait_reply_done(page) -> None:
    page.wait_for_function("!document.getElementById('send').disabled", timeout=30000)


def test_chat_page_flow(random_server, browser):
    page = open_page(browser, random_server.base_url)
    assert page.text_content("#model-name") == "모델: saessak-tiny"
    assert page.text_content("#send") == "보내기" and "새 대화" in page.text_content("#new-chat")
    assert page.get_attribute("html", "lang") == "ko"
    set_value(page, "#max-tokens", "12")

    # Enter while the IME is composing a syllable must not send; Shift+Enter makes a new line
    page.fill("#input", "안녕하세요")
    page.dispatch_event("#input", "keydown", {"key": "Enter", "isComposing": True, "keyCode": 229})
    assert page.locator(".message").count() == 0
    page.focus("#input")
    page.keyboard.press("End")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("반가워요")
    assert page.input_value("#input") == "안녕하세요\n반가워요"
    page.keyboard.press("Enter")
    wait_reply_done(page)
    assert page.locator(".message.user .body").first.text_content() == "안녕하세요\n반가워요"
    assert page.locator(".message.assistant").count() == 1
    assert page.input_value("#input") == ""

    # the conversation survives a reload (localStorage)
    page.reload()
    page.wait_for_selector(".message.user")
    assert page.locator("#conversations li").count() == 1
    assert "안녕하세요" in page.locator("#conversations li .open").first.text_content()
    assert page.locator(".message").count() == 2
    assert page.input_value("#max-tokens") == "12"  # settings persist too

    # a long reply streams in and the stop button ends it; the server frees the slot
    set_value(page, "#max-tokens", "4000")
    page.fill("#input", "길게 말해 주세요")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.querySelectorAll('.message.assistant .body')[1]?.textContent.length > 3 "
        "&& !document.getElementById('stop').hidden", timeout=30000)
    page.click("#stop")
    wait_reply_done(page)
    assert page.text_content("#status") == "답변을 멈췄습니다."
    assert page.locator(".message.assistant .note").last.text_content() == "(답변을 멈췄습니다)"
    deadline = time.time() + 10
    while "saessak_running_requests 0" not in httpx.get(random_server.base_url + "/metrics").text:
        assert time.time() < deadline, "the stopped reply still holds a slot"
        time.sleep(0.05)
    stopped_text = page.locator(".message.assistant .body").last.text_content()
    assert 3 < len(stopped_text)

    # user text with HTML is shown as text, never run
    page.click("#new-chat")
    set_value(page, "#max-tokens", "4")
    page.fill("#input", INJECTION)
    page.keyboard.press("Enter")
    wait_reply_done(page)
    assert page.locator(".message.user .body").last.text_content() == INJECTION
    assert page.locator("#messages img, #messages script, #messages b").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#conversations li").count() == 2

    # model text goes through the Markdown renderer: code blocks render, HTML stays text
    html = page.evaluate("""() => {
        const div = document.createElement('div');
        window.saessakRenderMarkdown('**굵게** <i>x</i>\\n```html\\n<script>window.__pwned=3</script>\\n```\\n- 하나\\n- `둘`', div);
        return div.innerHTML;
    }""")
    assert "<strong>굵게</strong> &lt;i&gt;x&lt;/i&gt;" in html
    assert '<pre><code data-lang="html">&lt;script&gt;window.__pwned=3&lt;/script&gt;</code></pre>' in html
    assert "<ul><li>하나</li><li><code>둘</code></li></ul>" in html
    assert page.evaluate("window.__pwned") is None

    # delete a conversation; the deletion persists
    page.locator("#conversations li .delete").first.click()
    assert page.locator("#conversations li").count() == 1
    page.reload()
    page.wait_for_selector("#conversations li")
    assert page.locator("#conversations li").count() == 1
    page.context.close()


def test_page_renders_a_trained_models_markdown(browser, tmp_path):
    """A model that has memorised a few chats answers in Korean with Markdown, which the page renders
    (a rendering test: such a model is not what the speedrun trains, docs/img/webchat.png is)."""
    ckpt = train_demo_chat_model(tmp_path / "demo")
    with CliServer(ckpt, tmp_path, "--served-model-name", "saessak-demo") as srv:
        page = open_page(browser, srv.base_url)
        set_value(page, "#temperature", "0")
        set_value(page, "#system-prompt", "")
        for question in ("안녕하세요", "파이썬으로 인사하는 코드를 보여 줘"):
            page.fill("#input", question)
            page.keyboard.press("Enter")
            wait_reply_done(page)
        replies = page.locator(".message.assistant .body")
        assert replies.first.text_content().startswith("안녕하세요! 저는 새싹이에요.")
        assert page.locator(".message.assistant pre code").first.text_content() == 'print("안녕하세요")'
        assert page.locator(".message.assistant strong").first.text_content() == "파이썬"
        shot = tmp_path / "webchat.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        page.context.close()
    assert re.search(r'"status": 200', srv.logs())
