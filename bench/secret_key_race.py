"""Fresh installs whose gunicorn workers start together: do they all get one secret key?

Each round forks ``--workers`` processes that wait at a barrier and then read
the instance key of an empty instance folder, with the hub's
``hub.app.instance_secret`` and with the check-then-write it replaced (the
baseline, measured in the same run).  Prints the rounds in which the
processes disagreed, for both.

    .venv/bin/python bench/secret_key_race.py --rounds 300 --workers 8
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import tempfile
from pathlib import Path

from hub.app import instance_secret


def check_then_write(path: Path) -> str:
    """What the hub did before: exists? else write; then read (two starters can both write)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _start(fn, path, barrier, out):
    barrier.wait()
    out.put(fn(Path(path)))


def split_rounds(fn, rounds: int, workers: int) -> int:
    ctx = multiprocessing.get_context("fork")
    split = 0
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "instance" / "secret_key"
            barrier, out = ctx.Barrier(workers), ctx.Queue()
            procs = [ctx.Process(target=_start, args=(fn, str(path), barrier, out)) for _ in range(workers)]
            for p in procs:
                p.start()
            keys = {out.get(timeout=30) for _ in procs}
            for p in procs:
                p.join()
            split += len(keys) > 1
    return split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    before = split_rounds(check_then_write, args.rounds, args.workers)
    after = split_rounds(instance_secret, args.rounds, args.workers)
    print(f"{args.rounds} fresh starts x {args.workers} processes: different keys in {before} (check-then-write) "
          f"-> {after} (instance_secret)")


if __name__ == "__main__":
    main()
