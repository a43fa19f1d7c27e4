"""Scoring benchmark: enrichment + scoring of N generated items on one core.

Measures, in one run on this machine:

1. hub: the default enricher (language, sentiment with its words, themes) and
   scorer (cues, calibrated risk with contributions) on each item, as the
   pipeline calls them (detector and lexicons are built before timing, as in
   a running hub; every text is distinct and the per-text caches are cleared,
   so no result is remembered: the worst case);
2. baseline: a no-op pass over the same items (building the enriched copy and
   summing zero signals), the floor any scorer pays in this loop;
3. an import's stream: the demo generator's own texts (stock answers repeat, the
   source gives the language), where remembered results do the work.

Prints items/s of each (target for the hub: >= 2,000 items/s on distinct texts).

    python bench/scoring.py [--items 20000]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.config import load_config  # noqa: E402
from hub.defaults import enrich, scoring  # noqa: E402
from hub.defaults.text import language, phrases, sentiment  # noqa: E402
from hub.sdk.contracts import parse_feedback  # noqa: E402
from hub.sdk.demo_data import generate_feedback  # noqa: E402
from hub.sdk.schema import ScoringContext  # noqa: E402


def items(n: int):
    end = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    rows = generate_feedback(random.Random(7), n, start=end - dt.timedelta(days=60), end=end, people=n // 4,
                             prefix="bench")
    out = []
    for i, obj in enumerate(rows):
        obj = dict(obj)
        obj.pop("language", None)  # make the detector work on every item
        if obj.get("text"):
            obj["text"] = f"{obj['text']} #{i}"  # distinct texts: no cache hit between items
        out.append(parse_feedback(obj, now=end)[1])
    return out


def run_hub(batch, config) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds): the CPU figure is what one core can do even when
    other work shares the machine."""
    ctx = ScoringContext(config=config["scoring"])
    start, cpu = time.perf_counter(), time.process_time()
    for item in batch:
        out = enrich.hub_enrich_feedback(item, config) or {}
        extra = out.pop("extra", {})
        item = dataclasses.replace(item, **{k: v for k, v in out.items() if v is not None},
                                   extra={**item.extra, **extra})
        signals = scoring.hub_score_feedback(item, ctx)
        max(0, min(100, round(sum(s.weight for s in signals))))
    return time.perf_counter() - start, time.process_time() - cpu


def import_stream(n: int):
    """The items as ``bench/ingest.py`` imports them: languages given, texts repeating."""
    end = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    rows = generate_feedback(random.Random(42), n, start=end - dt.timedelta(days=60), end=end, people=n // 4,
                             prefix="bench")
    return [parse_feedback(obj, now=end)[1] for obj in rows]


def run_baseline(batch) -> float:
    start = time.perf_counter()
    for item in batch:
        item = dataclasses.replace(item, extra={**item.extra})
        max(0, min(100, round(sum(s.weight for s in []))))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    args = parser.parse_args()
    config = load_config(None, environ={})
    batch = items(args.items)
    run_hub(batch[:200], config)  # warm-up: lingua loads its models, the lexicons their files
    language.detect_language.cache_clear()
    phrases.clear_caches()
    enrich.clear_caches()
    scoring.clear_caches()
    sentiment.model_for(config["enrich"]["sentiment"]).of.cache_clear()
    hub_s, hub_cpu = run_hub(batch, config)
    base_s = run_baseline(batch)
    print(f"enrich + score: {len(batch):,} items in {hub_s:.2f} s = {len(batch) / hub_s:,.0f} items/s, "
          f"{len(batch) / hub_cpu:,.0f} per CPU second  (target >= 2,000)")
    print(f"no-op baseline: {len(batch):,} items in {base_s:.3f} s = {len(batch) / base_s:,.0f} items/s")
    print(f"ratio hub/no-op: {base_s / hub_s:.4f}")
    stream = import_stream(args.items)
    stream_s, stream_cpu = run_hub(stream, config)
    print(f"import stream:  {len(stream):,} items in {stream_s:.2f} s = {len(stream) / stream_s:,.0f} items/s, "
          f"{len(stream) / stream_cpu:,.0f} per CPU second  (repeating texts, remembered results)")
    print("BENCH " + json.dumps({"name": "scoring", "value": round(len(batch) / hub_s), "unit": "items/s enrich + score",
                                 "baseline": round(len(batch) / base_s), "ratio": round(base_s / hub_s, 4),
                                 "goal": ">= 2,000 items/s", "pass": len(batch) / hub_s >= 2000}))  # bench/README.md


if __name__ == "__main__":
    main()
