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


def test_tuning_runs_once_and_never_starts_a_process() -> None:
    # app.py calls it on every rerun: a subprocess there (ctypes.util.find_library runs ldconfig) forked the server
    # while a job's forward pass ran and held the page's rerun for the whole job.
    child = """
import subprocess, sys
def refuse(*args, **kwargs):
    raise AssertionError("tune_process started a process")
subprocess.Popen = refuse
from ui import runtime
runtime.tune_process()
sys.setswitchinterval(0.003)
runtime.tune_process()  # a rerun: the process is tuned already, nothing is set again
print(sys.getswitchinterval())
"""
    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "MALLOC_ARENA_MAX")}
    done = subprocess.run([sys.executable, "-c", child], cwd=ROOT, env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == 0.003
