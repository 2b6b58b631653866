"""The tests plan with the plain imagination: compiling it in the background of every
test (and of the app servers they start) would only slow them down. The test that
checks the compiled pass turns it back on for itself (tests/test_compiled.py)."""

import os

os.environ.setdefault("LAB_COMPILE", "0")
