"""Start-up cost: ``feedback-hub --help`` and ``create_app()`` against a
minimal click CLI, each in a fresh interpreter, measured in the same run.

The ratio to the baseline is the figure to watch: absolute times move with
the machine and its load, the ratio much less.  Each figure is the best of
``--runs`` (default 7) runs, the usual way to time start-up (the minimum is
the run least disturbed by other work).  Target: ``--help`` under 200 ms on
an idle machine, a few times the bare click baseline.

    .venv/bin/python bench/startup.py [--runs 7]
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

ROOT = Path(__file__).resolve().parent.parent

BASELINE = """
import click

@click.group()
def main():
    "A minimal click CLI."

@main.command()
def hello():
    "Say hello."

main(["--help"], standalone_mode=False)
"""

CREATE_APP = """
from hub import create_app
create_app({"database_url": "sqlite:///%s"})
"""


def best_of(runs: int, argv: list[str], env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HUB_INSTANCE_PATH": tmp}
        env.pop("HUB_CONFIG", None)
        py = sys.executable
        figures = {
            "click baseline --help": best_of(args.runs, [py, "-c", BASELINE], env),
            "feedback-hub --help": best_of(args.runs, [py, "-m", "hub.cli", "--help"], env),
            "create_app()": best_of(args.runs, [py, "-c", CREATE_APP % (Path(tmp) / "bench.db")], env),
        }
    base = figures["click baseline --help"]
    for name, seconds in figures.items():
        print(f"{name:<24} {seconds * 1000:7.0f} ms  {seconds / base:5.1f}x baseline")
    ms = figures["feedback-hub --help"] * 1000
    print("BENCH " + json.dumps({"name": "startup", "value": round(ms), "unit": "ms feedback-hub --help",
                                 "baseline": round(base * 1000), "ratio": round(ms / 1000 / base, 2),
                                 "goal": "< 200 ms", "pass": ms < 200}))  # bench/README.md: the summary's line


if __name__ == "__main__":
    main()
