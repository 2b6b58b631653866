"""The tests plan with the plain imagination: compiling it in the background of every
test (and of the app servers they start) would only slow them down. The test that
checks the compiled pass turns it back on for itself (tests/test_compiled.py).

``lab``: a real server and browser for the browser tests of a module."""

import os
import shutil

import pytest
from webpage import ARTIFACTS  # the browser tests' shared helpers (tests/webpage.py)

os.environ.setdefault("LAB_COMPILE", "0")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A server with its own workspace holding a tiny Reach dataset."""
    # imported here, for the browser tests alone: streamlit's server, playwright, pybullet
    from app.serve import LabServer, chromium
    from scenes.collect import CollectConfig, collect

    home = tmp_path_factory.mktemp("labhome")
    collect(
        CollectConfig(
            scene="reach",
            out=str(home / "data" / "tiny"),
            episodes=12,
            steps=30,
            workers=1,
            progress=False,
        )
    )
    # a saved design any motion breaks: the stress test finds failures at a budget of 2
    (home / "costs").mkdir()
    barely = '{"format": "lab-costs", "version": 1, "terms": [{"name": "barely move", '
    barely += '"expression": "relu(speed - 0.05)", "kind": "hard"}]}'
    (home / "costs" / "barely-move.json").write_text(barely)
    ARTIFACTS.mkdir(exist_ok=True)
    with LabServer(home=home, log=ARTIFACTS / "server.log") as url, chromium() as browser:
        yield url, browser
    shutil.rmtree(home, ignore_errors=True)
    # Reopened runs fill their pages' widgets through Session State; a widget also given a
    # default makes Streamlit log a warning (app.state.seeded is the cure)
    log = (ARTIFACTS / "server.log").read_text()
    assert "created with a default value" not in log, log[-3000:]
