import os
import time

import pytest

# Keep tests deterministic and light on a 2-core machine.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory):
    """The whole pipeline at micro scale through the real stages (the e2e tests read its outputs)."""
    from saessak.cli import main

    run = tmp_path_factory.mktemp("speedrun") / "micro"
    t0 = time.perf_counter()
    code = main(["speedrun", "--preset", "micro", "--run", str(run)])
    assert code == 0, "micro speedrun failed"
    return run, time.perf_counter() - t0
