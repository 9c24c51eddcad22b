import os
import time

import pytest

# Keep tests deterministic and light on a 2-core machine.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


SLOW_REASON = "slow: run with --runslow"


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason=SLOW_REASON)
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def in_ci() -> bool:
    """CI sets CI=true (.ci/run runs with it); "", "0", "false" and "no" mean a developer's machine."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a browser test may not skip: a missing Chromium or Playwright is a broken set-up, not a
    pass. On a developer's machine the skip stands (with its reason in the -ra summary)."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and "browser" in item.keywords and in_ci()):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if SLOW_REASON in reason:  # deselected by choice (no --runslow), not by a missing browser
        return
    report.outcome = "failed"
    report.longrepr = (f"browser test skipped in CI ({reason}); CI must run it: scripts/setup.sh installs "
                       "Debian's chromium (as root, or with sudo) and Playwright (the 'browser' extra)")


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory):
    """The whole pipeline at micro scale through the real stages (the e2e tests read its outputs)."""
    from saessak.cli import main

    run = tmp_path_factory.mktemp("speedrun") / "micro"
    t0 = time.perf_counter()
    code = main(["speedrun", "--preset", "micro", "--run", str(run)])
    assert code == 0, "micro speedrun failed"
    return run, time.perf_counter() - t0
