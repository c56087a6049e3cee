"""Extraction when another process wants a core: torch's OpenMP threads spin-waiting vs sleeping.

On a 2-core machine the app's forward pass shares the CPU with the browser, other sessions and the
Streamlit server's own threads. torch uses one OpenMP thread per core; with the default GNU OpenMP wait
policy an idle worker spins, and when one of the two cores is busy the barrier at the end of every
operator waits for a descheduled thread. This measures ``extract`` on resnet18 with the CPU idle and with
one core kept busy by a spinning process, for ``OMP_WAIT_POLICY`` unset (the default) and ``PASSIVE``.
The policy is read when torch loads, so each measurement runs in a fresh child process; children
alternate between policies (ABAB...).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from .common import ratio, summary

__all__ = ["POLICIES", "run"]

POLICIES = {"default": None, "PASSIVE": "PASSIVE"}


def _child(rounds: int) -> dict[str, list[float]]:
    """In a child process: extract() timings, idle and with one busy core, alternating per round."""
    import torch

    from featviz_core import default_layer, extract, load_torchvision

    from .extraction import bench_image

    model = load_torchvision("resnet18", weights=None)
    image = bench_image()
    layers = [default_layer(model)]
    for _ in range(3):
        extract(model, image, layers)
    out: dict[str, list[float]] = {"idle": [], "one core busy": []}
    for _ in range(rounds):
        for state in out:
            burner = None
            if state != "idle":
                burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(0.2)
            try:
                samples = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    extract(model, image, layers)
                    samples.append(time.perf_counter() - t0)
                out[state].append(sorted(samples)[1])
            finally:
                if burner is not None:
                    burner.kill()
                    burner.wait()
    out["threads"] = [float(torch.get_num_threads())]
    return out


def run(rounds: int = 4, children: int = 2) -> dict[str, Any]:
    """``children`` child processes per policy (alternating), ``rounds`` idle/busy pairs each."""
    results: dict[str, dict[str, list[float]]] = {p: {"idle": [], "one core busy": []} for p in POLICIES}
    threads = None
    for _ in range(children):
        for policy, value in POLICIES.items():
            env = dict(os.environ)
            env.pop("OMP_WAIT_POLICY", None)
            if value is not None:
                env["OMP_WAIT_POLICY"] = value
            code = f"import json, bench.contention as c; print(json.dumps(c._child({rounds})))"
            done = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            )
            data = json.loads(done.stdout.strip().splitlines()[-1])
            threads = int(data.pop("threads")[0])
            for state, samples in data.items():
                results[policy][state].extend(samples)
    table: dict[str, Any] = {}
    for policy, states in results.items():
        idle = summary(states["idle"])["median"]
        busy = summary(states["one core busy"])["median"]
        table[policy] = {"idle_s": idle, "busy_s": busy, "busy_over_idle": ratio(busy, idle)}
    return {
        "model": "resnet18, extract(default layer)",
        "torch_threads": threads,
        "samples_per_cell": rounds * children,
        "policies": table,
        "passive_over_default_when_busy": ratio(table["PASSIVE"]["busy_s"], table["default"]["busy_s"]),
        "passive_over_default_when_idle": ratio(table["PASSIVE"]["idle_s"], table["default"]["idle_s"]),
    }
