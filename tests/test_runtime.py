"""ui/runtime.py: the process settings the app sets before torch loads, and what it leaves alone."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.appserver import ROOT

CHILD = """
import os, sys
{before}
from ui.runtime import tune_process
tune_process()
print(sys.getswitchinterval(), os.environ["OMP_WAIT_POLICY"])
"""


def _settings(before: str = "", env: dict[str, str] | None = None) -> tuple[float, str]:
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | (env or {})
    done = subprocess.run([sys.executable, "-c", CHILD.format(before=before)], cwd=ROOT, env=environment,
                          capture_output=True, text=True, check=True)
    interval, policy = done.stdout.split()
    return float(interval), policy


def test_the_server_hands_the_interpreter_over_every_millisecond_and_its_threads_sleep_while_they_wait() -> None:
    assert _settings() == (0.001, "PASSIVE")


def test_settings_the_person_running_the_app_chose_are_kept() -> None:
    interval, policy = _settings("sys.setswitchinterval(0.002)", {"OMP_WAIT_POLICY": "ACTIVE"})
    assert interval == 0.002 and policy == "ACTIVE"
