"""Hypothesis profiles of the fuzz tests and a count of the inputs they ran.

`REVISIT_FUZZ_PROFILE` picks the profile: `ci` (the default: over 10,000 inputs in all,
about a minute) or `full` (ten times as many, failures remembered under
`$REVISIT_CACHE_DIR/hypothesis/examples`). Every test counts what it ran with `ran(name)`; the
counts are printed at the end of the session."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILE = os.environ.get("REVISIT_FUZZ_PROFILE", "ci")
#: How many times a test's `ci` budget of examples each profile runs.
SCALE = {"ci": 1, "full": 10}
if PROFILE not in SCALE:
    raise pytest.UsageError(f"REVISIT_FUZZ_PROFILE={PROFILE!r}: one of {', '.join(SCALE)}")
CACHE = Path(os.environ.get("REVISIT_CACHE_DIR", Path.home() / ".cache" / "revisit"))
set_hypothesis_home_dir(CACHE / "hypothesis")  # its caches, out of the repository

settings.register_profile(
    "ci",
    deadline=None,  # a loaded CI machine is slow now and then; crashes are what count
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "full",
    deadline=None,
    database=DirectoryBasedExampleDatabase(CACHE / "hypothesis" / "examples"),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(PROFILE)


def budget(ci_examples: int) -> settings:
    """The examples of one test: `ci_examples` in the ci profile, scaled in the others."""
    return settings(max_examples=ci_examples * SCALE[PROFILE])


#: Inputs run, by test.
RAN: Counter[str] = Counter()


def ran(name: str) -> None:
    RAN[name] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RAN:
        return
    terminalreporter.section(f"fuzz inputs run (profile {PROFILE})")
    for name, count in sorted(RAN.items()):
        terminalreporter.write_line(f"{name:48} {count:>8}")
    terminalreporter.write_line(f"{'total':48} {sum(RAN.values()):>8}")
