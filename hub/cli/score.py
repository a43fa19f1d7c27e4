"""``feedback-hub score``: how well the risk separates what needs a callback.

``feedback-hub score evaluate FILE --label COLUMN`` scores every line of a
labelled file in the common schema (JSONL or CSV, as ``feedback-hub import``
reads it, plus one label column) through the installed enrichers and scorers,
without a database, and prints per language: AUC, precision and recall at
``scoring.risk_threshold``, and a calibration table (mean risk against the
share of positives, per risk band).  Import-light on purpose: the heavy
modules load inside the command.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import click

POSITIVE_LABELS = {"1", "true", "yes", "y", "complaint", "negative", "neg", "callback"}
NEGATIVE_LABELS = {"0", "false", "no", "n", "none", "positive", "pos", "neutral", "praise"}


@dataclass(frozen=True)
class Scored:
    risk: int
    label: int
    language: str


def auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U, ties count half); None with one class only."""
    pairs = sorted(zip(scores, labels, strict=True))
    pos = sum(labels)
    neg = len(labels) - pos
    if not pos or not neg:
        return None
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mid_rank = (i + 1 + j) / 2  # ranks i+1..j share their mean
        rank_sum += mid_rank * sum(label for _, label in pairs[i:j])
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def precision_recall(rows: Iterable[Scored], threshold: int) -> tuple[float | None, float | None]:
    rows = list(rows)
    flagged = [r for r in rows if r.risk >= threshold]
    positives = sum(r.label for r in rows)
    hits = sum(r.label for r in flagged)
    return (hits / len(flagged) if flagged else None), (hits / positives if positives else None)


def calibration(rows: Iterable[Scored], bands: int = 10) -> list[tuple[str, int, float, float]]:
    """(band, n, mean risk / 100, observed share of positives) per non-empty risk band."""
    width = 100 // bands
    grouped: dict[int, list[Scored]] = {}
    for r in rows:
        grouped.setdefault(min(r.risk // width, bands - 1), []).append(r)
    out = []
    for band in sorted(grouped):
        group = grouped[band]
        top = 100 if band == bands - 1 else (band + 1) * width - 1
        out.append((f"{band * width}-{top}", len(group), sum(r.risk for r in group) / len(group) / 100,
                    sum(r.label for r in group) / len(group)))
    return out


def parse_label(value, line: int, column: str) -> int:
    text = str(value).strip().lower() if value is not None else ""
    if text in POSITIVE_LABELS:
        return 1
    if text in NEGATIVE_LABELS:
        return 0
    raise click.ClickException(f"line {line}: label column {column!r} is {value!r}; "
                               f"use 1/0, true/false, complaint/none")


def score_file(path, label_column: str, config) -> tuple[list[Scored], list[tuple[int, str]]]:
    """Enrich and score each line as the hub would (no database, no prior contacts)."""
    import dataclasses

    from hub.engine.importer import read_lines
    from hub.plugin_manager import make_plugin_manager
    from hub.sdk.contracts import InputError, parse_feedback
    from hub.sdk.schema import ScoringContext

    hook = make_plugin_manager().hook
    context = ScoringContext(config=config.get("scoring", {}))
    rows, bad = [], []
    for line, obj in read_lines(path):
        if isinstance(obj, InputError):
            bad.append((line, str(obj)))
            continue
        if not isinstance(obj, dict) or label_column not in obj:
            bad.append((line, f"no {label_column!r} column"))
            continue
        obj = dict(obj)
        label = parse_label(obj.pop(label_column), line, label_column)
        try:
            _, item = parse_feedback(obj)
        except InputError as exc:
            bad.append((line, str(exc)))
            continue
        updates, extra = {}, {}
        for result in hook.hub_enrich_feedback(item=item, config=config):
            for key, value in (result or {}).items():
                if key == "extra" and isinstance(value, dict):
                    extra.update({k: v for k, v in value.items() if k not in item.extra and k not in extra})
                elif value is not None and getattr(item, key, None) is None and key not in updates:
                    updates[key] = value
        if extra:
            updates["extra"] = {**item.extra, **extra}
        item = dataclasses.replace(item, **updates) if updates else item
        signals = [s for res in hook.hub_score_feedback(item=item, context=context) for s in (res or [])]
        risk = max(0, min(100, round(sum(s.weight for s in signals))))
        rows.append(Scored(risk, label, item.language or "?"))
    return rows, bad


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(rows: list[Scored], threshold: int, echo=click.echo) -> None:
    groups = {"all": rows}
    for lang in sorted({r.language for r in rows}):
        groups[lang] = [r for r in rows if r.language == lang]
    echo(f"{'':8} {'items':>6} {'pos':>6} {'AUC':>6} {'prec':>6} {'recall':>6}   (precision/recall at risk >= {threshold})")
    for name, group in groups.items():
        prec, rec = precision_recall(group, threshold)
        echo(f"{name:8} {len(group):6d} {sum(r.label for r in group):6d} "
             f"{_fmt(auc([r.risk for r in group], [r.label for r in group])):>6} {_fmt(prec):>6} {_fmt(rec):>6}")
    echo("")
    echo("calibration (all): risk band, items, mean risk/100, observed share of positives")
    for band, n, mean, observed in calibration(rows):
        echo(f"  {band:>7} {n:6d} {mean:8.2f} {observed:8.2f}")


@click.group("score")
def score() -> None:
    """Scoring tools: measure the risk on labelled feedback."""


@score.command("evaluate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--label", "label_column", required=True, help="column with 1/0 (needs a callback or not)")
@click.option("--threshold", type=click.IntRange(0, 100), default=None,
              help="risk from which an item counts as flagged (default: scoring.risk_threshold)")
@click.pass_obj
def evaluate(c, file: str, label_column: str, threshold: int | None) -> None:
    """AUC, precision/recall and calibration of the risk on a labelled CSV or JSONL file."""
    from pathlib import Path

    from hub.config import ConfigError, load_config

    try:
        config = load_config(getattr(c, "config_file", None), overrides=getattr(c, "overrides", None) or None)
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None
    rows, bad = score_file(Path(file), label_column, config)
    for line, reason in bad[:20]:
        click.echo(f"line {line}: skipped: {reason}", err=True)
    if len(bad) > 20:
        click.echo(f"... and {len(bad) - 20} more skipped lines", err=True)
    if not rows:
        raise click.ClickException("no usable labelled lines")
    threshold = threshold if threshold is not None else int(config.get("scoring", {}).get("risk_threshold", 40))
    click.echo(f"{file}: {len(rows)} items scored, {len(bad)} skipped")
    report(rows, threshold)
