"""Plots of the fan-out results: SVG line charts and a Markdown table from ``bench.fanout --out``.

    .venv/bin/python -m bench.plot bench/results/fanout.jsonl --out docs/img
    .venv/bin/python -m bench.plot bench/results/fanout.jsonl --out docs/img --check   # exit 1 if stale

Reads the JSONL records (one per scenario run, fields in bench/results/README.md) and writes, for
each of deliveries/s, p99 latency and gateway CPU per delivery, one chart against the publish
rate (at ``--clients``, default 100) and one against the number of clients (at ``--rate``, default
1000). A series is a label and a mode ("before, per frame", "after, batched"); runs repeated at
the same point are drawn as their median with a min-max bar. Runs with more than one gateway
process go to their own charts against the number of workers (next to the one-worker runs of the
same scenario). ``fanout-table.md`` lists every run. The Markdown image links for
docs/performance.md are printed on stdout. The output depends only on the input (same records,
same bytes), so the files can be committed and checked with ``--check``.

This module owns the chart writer too (no plotting dependency): axes with round ticks, an
optional log scale, gridlines, one colour per label and one marker and dash per mode, a legend,
on an explicit white background so the charts read on light and dark pages alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

log = logging.getLogger("bench.plot")

MAX_BYTES = 32 * 1024 * 1024
MAX_RECORDS = 100_000
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+-]{0,39}")
CLIENT_KIND = re.compile(r"[a-z][a-z0-9_-]{0,19}")
COMMIT = re.compile(r"[0-9a-z-]{0,48}")
TIME = re.compile(r"[0-9T:.+Z-]{0,40}")
METRICS = {  # field -> (chart title, y axis title)
    "delivered_per_s": ("Deliveries per second", "deliveries/s, all clients together"),
    "p99_ms": ("Latency p99", "publish-to-receive p99 (ms)"),
    "cpu_us_per_delivery": ("Gateway CPU per delivery", "gateway CPU per delivery (µs)"),
}
WORKER_METRICS = ("delivered_per_s", "cpu_us_per_delivery")
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999999")
MODES = {False: "per frame", True: "batched"}
TEXT, AXIS, GRID, FONT = "#24292f", "#57606a", "#d8dee4", "Helvetica, Arial, sans-serif"


class InputError(Exception):
    """The input cannot be plotted; the message is one line for the user."""


@dataclass(frozen=True)
class Run:
    """One fan-out record, the fields this module uses."""

    label: str
    client: str
    clients: int
    rate: int
    batch: bool
    workers: int
    delivered_per_s: float | None
    missing: int
    p50_ms: float | None
    p99_ms: float | None
    cpu_us_per_delivery: float | None
    coalesce_ms: float | None
    commit: str
    time: str

    def metric(self, name: str) -> float | None:
        value: float | None = getattr(self, name)
        return value


def _field(obj: dict[str, Any], name: str, kinds: tuple[type, ...], where: str) -> Any:
    if name not in obj:
        raise InputError(f"{where}: missing field {name!r}")
    value = obj[name]
    if isinstance(value, float) and not math.isfinite(value):
        value = None  # NaN written by a JSON writer that allows it: the same as null
    if value is None and type(None) in kinds:
        return None
    if type(value) not in kinds:
        expected = "/".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise InputError(f"{where}: field {name!r} must be {expected}, not {json.dumps(value)[:40]}")
    if type(value) in (int, float) and value < 0:
        raise InputError(f"{where}: field {name!r} must not be negative, not {value}")
    return float(value) if float in kinds else value


def _number(obj: dict[str, Any], name: str, where: str) -> float | None:
    value: float | None = _field(obj, name, (float, int, type(None)), where)
    return value


def _count(obj: dict[str, Any], name: str, where: str, low: int = 0) -> int:
    value: int = _field(obj, name, (int,), where)
    if not low <= value <= 100_000_000:
        raise InputError(f"{where}: field {name!r} must be between {low} and 100,000,000, not {value}")
    return value


def _text(obj: dict[str, Any], name: str, pattern: re.Pattern[str], where: str) -> str:
    value: str = _field(obj, name, (str,), where)
    if not pattern.fullmatch(value):
        raise InputError(f"{where}: field {name!r} ({value[:40]!r}) must match {pattern.pattern}")
    return value


def parse_run(line: str, where: str) -> Run:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise InputError(f"{where}: not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: not a JSON object")
    return Run(
        label=_text(obj, "label", LABEL, where), client=_text(obj, "client", CLIENT_KIND, where),
        clients=_count(obj, "clients", where, 1), rate=_count(obj, "rate", where, 1),
        batch=_field(obj, "batch", (bool,), where), workers=_count(obj, "workers", where, 1),
        delivered_per_s=_number(obj, "delivered_per_s", where), missing=_count(obj, "missing", where),
        p50_ms=_number(obj, "p50_ms", where), p99_ms=_number(obj, "p99_ms", where),
        cpu_us_per_delivery=_number(obj, "cpu_us_per_delivery", where),
        coalesce_ms=_number(obj, "coalesce_ms", where), commit=_text(obj, "commit", COMMIT, where),
        time=_text(obj, "time", TIME, where))


def load_runs(path: Path) -> list[Run]:
    """The records of a JSONL file, in file order; blank lines are ignored."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise InputError(f"{path}: {size:,} bytes, more than the {MAX_BYTES:,} this reads")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    runs = [parse_run(line, f"{path} line {n}") for n, line in enumerate(lines, 1) if line.strip()]
    if not runs:
        raise InputError(f"{path}: no records (expected JSONL written by bench.fanout --out)")
    if len(runs) > MAX_RECORDS:
        raise InputError(f"{path}: {len(runs):,} records, more than the {MAX_RECORDS:,} this plots")
    return runs


# --- series: medians of repeated runs ---------------------------------------------------------

@dataclass(frozen=True)
class Point:
    x: float
    y: float  # the median of the runs at this x
    lo: float
    hi: float
    reps: int


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    batch: bool
    points: tuple[Point, ...]  # by x, only the points with a value


@dataclass(frozen=True)
class Chart:
    filename: str
    title: str
    subtitle: str
    x_title: str
    y_title: str
    series: tuple[Series, ...]
    x_log: bool
    y_log: bool


def series_of(runs: Sequence[Run], all_runs: Sequence[Run], metric: str,
              x_of: Callable[[Run], float], extra: Callable[[Run], str] = lambda r: "") -> list[Series]:
    """One series per label, client kind, mode and ``extra`` among ``runs``; colours and order
    come from ``all_runs`` so that a label looks the same on every chart."""
    kinds = list(dict.fromkeys(r.client for r in all_runs))
    styles = list(dict.fromkeys((r.label, r.client) for r in all_runs))
    keys = sorted(dict.fromkeys((styles.index((r.label, r.client)), r.batch, extra(r)) for r in runs))
    out = []
    for style, batch, scenario in keys:
        label, client = styles[style]
        mine = [r for r in runs if (r.label, r.client, r.batch, extra(r)) == (label, client, batch, scenario)]
        points = []
        for x in sorted({x_of(r) for r in mine}):
            values = [v for r in mine if x_of(r) == x and (v := r.metric(metric)) is not None]
            if values:
                points.append(Point(x, statistics.median(values), min(values), max(values), len(values)))
        if not points:
            continue
        name = f"{label}, {MODES[batch]}" + (f", {client} client" if len(kinds) > 1 else "") + scenario
        reps = sorted({p.reps for p in points})
        if reps[-1] > 1:
            name += f" (median of {'up to ' if len(reps) > 1 else ''}{reps[-1]} runs)"
        out.append(Series(name, COLOURS[style % len(COLOURS)], batch, tuple(points)))
    return out


def spans_decade(values: Sequence[float]) -> bool:
    return bool(values) and min(values) > 0 and max(values) / min(values) >= 10


def charts(runs: Sequence[Run], clients: int, rate: int) -> list[Chart]:
    """Every chart with at least one point."""
    single = [r for r in runs if r.workers == 1]
    out: list[Chart] = []
    for metric, (title, y_title) in METRICS.items():
        for name, subset, x_of, x_title, sub in (
            ("rate", [r for r in single if r.clients == clients], lambda r: float(r.rate),
             "publish rate (events/s)", f"{clients:,} clients, one gateway process"),
            ("clients", [r for r in single if r.rate == rate], lambda r: float(r.clients),
             "clients", f"{rate:,} events/s, one gateway process"),
        ):
            series = tuple(series_of(subset, runs, metric, x_of))
            if series:
                x_log = spans_decade([p.x for s in series for p in s.points])
                lows = [p.lo for s in series for p in s.points]
                highs = [p.hi for s in series for p in s.points]
                y_log = metric == "p99_ms" and min(lows) > 0 and max(highs) / min(lows) >= 100
                out.append(Chart(f"fanout-{metric.replace('_', '-')}-vs-{name}.svg",
                                 f"{title} against {x_title.split(' (')[0]}", sub,
                                 x_title + (", log scale" if x_log else ""),
                                 y_title + (", log scale" if y_log else ""), series, x_log, y_log))
    scenarios = {(r.label, r.client, r.batch, r.clients, r.rate) for r in runs if r.workers > 1}
    scaled = [r for r in runs if (r.label, r.client, r.batch, r.clients, r.rate) in scenarios]
    combos = sorted({(r.clients, r.rate) for r in scaled})
    for metric in WORKER_METRICS:
        def scenario(r: Run) -> str:
            return f", {r.clients:,} clients at {r.rate:,}/s" if len(combos) > 1 else ""
        series = tuple(series_of(scaled, runs, metric, lambda r: float(r.workers), scenario))
        if series:
            sub = f"{combos[0][0]:,} clients at {combos[0][1]:,} events/s" if len(combos) == 1 else ""
            title, y_title = METRICS[metric]
            out.append(Chart(f"fanout-workers-{metric.replace('_', '-')}.svg",
                             f"{title} against gateway processes", sub, "gateway processes (workers)",
                             y_title, series, False, False))
    return out


# --- scales and ticks ---------------------------------------------------------------------------

def nice_step(span: float, count: int = 5) -> float:
    raw = span / count
    magnitude: float = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * 0.999)


def linear_ticks(lo: float, hi: float, from_zero: bool) -> tuple[float, float, list[float]]:
    """A domain covering [lo, hi] with round ends (from 0 if asked), and its ticks."""
    if from_zero:
        lo = min(0.0, lo)
    if hi - lo <= 0:
        lo, hi = (lo - 1, hi + 1) if not from_zero else (0.0, max(1.0, hi * 2))
    step = nice_step(hi - lo)
    start, end = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    ticks = [round(i * step, 10) for i in range(start, end + 1)]
    return ticks[0], ticks[-1], ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Round ticks (1, 2, 5 x 10^k, or only 10^k over more than two decades) in [lo, hi]."""
    mantissas = (1, 2, 5) if math.log10(hi / lo) <= 2 else (1,)
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
             for m in mantissas]
    return [t for t in ticks if lo * 0.999 <= t <= hi * 1.001]


@dataclass(frozen=True)
class Scale:
    lo: float
    hi: float
    log: bool
    ticks: tuple[float, ...]
    start: float  # pixels
    end: float

    def __call__(self, value: float) -> float:
        if self.log:
            share = math.log(value / self.lo) / math.log(self.hi / self.lo)
        else:
            share = (value - self.lo) / (self.hi - self.lo)
        return self.start + share * (self.end - self.start)


def make_scale(values: Sequence[float], log_scale: bool, start: float, end: float, y: bool) -> Scale:
    lo, hi = min(values), max(values)
    if log_scale:
        lo, hi = (10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))) if y else (lo, hi)
        ticks = log_ticks(lo, hi)
        if len(ticks) < 2:
            ticks = sorted({lo, hi})
        return Scale(lo, hi, True, tuple(ticks), start, end)
    if y:
        lo, hi, ticks = linear_ticks(lo, hi, from_zero=True)
        return Scale(lo, hi, False, tuple(ticks), start, end)
    if lo == hi:  # one x: the point in the middle, one tick
        pad = abs(lo) / 2 or 1.0
        return Scale(lo - pad, hi + pad, False, (lo,), start, end)
    step = nice_step(hi - lo)
    if all(float(v).is_integer() for v in values):
        step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9)
    ticks = [round(i * step, 10) for i in range(first, math.floor(hi / step + 1e-9) + 1)]
    return Scale(lo, hi, False, tuple(ticks), start, end)


def fmt_tick(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:g}k"
    if value.is_integer():
        return f"{value:,.0f}"
    return f"{value:.6g}"


# --- SVG ----------------------------------------------------------------------------------------

WIDTH, PLOT_TOP, PLOT_HEIGHT, LEFT, RIGHT, INSET = 800, 62, 300, 78, 24, 14
LEGEND_ROW, LEGEND_COLUMNS = 20, 2


def c(value: float) -> str:
    """A coordinate, rounded so that the output does not depend on float noise."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def marker(batch: bool, x: float, y: float, colour: str, cls: str = "marker") -> str:
    if batch:
        return (f'<rect class="{cls}" x="{c(x - 4)}" y="{c(y - 4)}" width="8" height="8" '
                f'fill="{colour}"/>')
    return f'<circle class="{cls}" cx="{c(x)}" cy="{c(y)}" r="4.5" fill="#ffffff" stroke="{colour}" ' \
           'stroke-width="2"/>'


def render(chart: Chart) -> str:
    """The chart as a standalone SVG document."""
    rows = math.ceil(len(chart.series) / LEGEND_COLUMNS)
    bottom = PLOT_TOP + PLOT_HEIGHT
    height = bottom + 56 + rows * LEGEND_ROW + 10
    points = [p for s in chart.series for p in s.points]
    xs = make_scale([p.x for p in points], chart.x_log, LEFT + INSET, WIDTH - RIGHT - INSET, y=False)
    ys = make_scale([v for p in points for v in (p.lo, p.hi)], chart.y_log, bottom, PLOT_TOP, y=True)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="{FONT}" font-size="12" fill="{TEXT}">',
           f"<title>{escape(chart.title)}</title>",
           f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
           f'<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{escape(chart.title)}</text>']
    notes = [chart.subtitle] if chart.subtitle else []
    if any(p.reps > 1 for p in points):
        notes.append("repeated runs: median, with a bar from the lowest to the highest")
    if notes:
        out.append(f'<text x="{LEFT}" y="44" fill="{AXIS}">{escape("; ".join(notes))}</text>')
    out.append(f'<g class="grid" stroke="{GRID}" stroke-width="1">')
    out += [f'<line x1="{c(xs(t))}" y1="{PLOT_TOP}" x2="{c(xs(t))}" y2="{bottom}"/>' for t in xs.ticks]
    out += [f'<line x1="{LEFT}" y1="{c(ys(t))}" x2="{WIDTH - RIGHT}" y2="{c(ys(t))}"/>' for t in ys.ticks]
    out.append("</g>")
    out.append(f'<g class="axes" fill="{AXIS}" font-size="11">')
    out.append(f'<path d="M{LEFT} {PLOT_TOP}V{bottom}H{WIDTH - RIGHT}" fill="none" stroke="{AXIS}"/>')
    out += [f'<text x="{c(xs(t))}" y="{bottom + 16}" text-anchor="middle">{fmt_tick(t)}</text>'
            for t in xs.ticks]
    out += [f'<text x="{LEFT - 6}" y="{c(ys(t) + 4)}" text-anchor="end">{fmt_tick(t)}</text>'
            for t in ys.ticks]
    out.append(f'<text x="{c((LEFT + WIDTH - RIGHT) / 2)}" y="{bottom + 36}" text-anchor="middle" '
               f'font-size="12" fill="{TEXT}">{escape(chart.x_title)}</text>')
    mid = c(PLOT_TOP + PLOT_HEIGHT / 2)
    out.append(f'<text x="18" y="{mid}" transform="rotate(-90 18 {mid})" text-anchor="middle" '
               f'font-size="12" fill="{TEXT}">{escape(chart.y_title)}</text>')
    out.append("</g>")
    for s in chart.series:
        dash = "" if s.batch else ' stroke-dasharray="6 4"'
        out.append(f'<g class="series" data-series="{escape(s.name, {chr(34): "&quot;"})}">')
        if len(s.points) > 1:
            pairs = " ".join(f"{c(xs(p.x))},{c(ys(p.y))}" for p in s.points)
            out.append(f'<polyline points="{pairs}" fill="none" stroke="{s.colour}" stroke-width="2"{dash}/>')
        out += [f'<line class="range" x1="{c(xs(p.x))}" y1="{c(ys(p.lo))}" x2="{c(xs(p.x))}" '
                f'y2="{c(ys(p.hi))}" stroke="{s.colour}" stroke-width="1.5"/>'
                for p in s.points if p.hi > p.lo]
        out += [marker(s.batch, xs(p.x), ys(p.y), s.colour) for p in s.points]
        out.append("</g>")
    out.append('<g class="legend">')
    column = (WIDTH - LEFT - RIGHT) / LEGEND_COLUMNS
    for i, s in enumerate(chart.series):
        x = LEFT + (i % LEGEND_COLUMNS) * column
        y = bottom + 58 + (i // LEGEND_COLUMNS) * LEGEND_ROW
        dash = "" if s.batch else ' stroke-dasharray="6 4"'
        out.append(f'<line x1="{c(x)}" y1="{y}" x2="{c(x + 30)}" y2="{y}" stroke="{s.colour}" '
                   f'stroke-width="2"{dash}/>')
        out.append(marker(s.batch, x + 15, y, s.colour, "key"))
        out.append(f'<text x="{c(x + 38)}" y="{y + 4}">{escape(s.name)}</text>')
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --- table and command --------------------------------------------------------------------------

def cell(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def table(runs: Sequence[Run]) -> str:
    """Every run as a Markdown table, ordered by label (first seen), mode, workers, clients, rate."""
    labels = list(dict.fromkeys(r.label for r in runs))
    ordered = sorted(runs, key=lambda r: (labels.index(r.label), r.client, r.batch, r.workers, r.clients,
                                          r.rate, r.time, r.commit))
    lines = ["| label | mode | client | workers | clients | rate/s | delivered/s | missing | p50 ms | "
             "p99 ms | CPU µs/delivery | coalesce ms | commit |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in ordered:
        lines.append(
            f"| {r.label} | {MODES[r.batch]} | {r.client} | {r.workers} | {r.clients:,} | {r.rate:,} | "
            f"{cell(r.delivered_per_s, ',.0f')} | {r.missing:,} | {cell(r.p50_ms, ',.1f')} | "
            f"{cell(r.p99_ms, ',.1f')} | {cell(r.cpu_us_per_delivery, '.2f')} | {cell(r.coalesce_ms, 'g')} | "
            f"{r.commit[:12] or '-'} |")
    return "\n".join(lines) + "\n"


def outputs(runs: Sequence[Run], clients: int, rate: int) -> tuple[dict[str, str], list[Chart]]:
    """File name -> content for every file this writes, and the charts among them."""
    drawn = charts(runs, clients, rate)
    files = {chart.filename: render(chart) for chart in drawn}
    files["fanout-table.md"] = table(runs)
    return files, drawn


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="plot: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="JSONL written by bench.fanout --out")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="directory for the files")
    parser.add_argument("--clients", type=int, default=100, help="clients of the charts against rate")
    parser.add_argument("--rate", type=int, default=1000, help="rate of the charts against clients")
    parser.add_argument("--docs", type=Path, default=Path("docs"),
                        help="the links printed are relative to this directory (default docs)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file in --out differs from what would be written")
    args = parser.parse_args(argv)
    try:
        files, drawn = outputs(load_runs(args.results), args.clients, args.rate)
    except InputError as exc:
        log.error("error: %s", exc)
        return 2
    if args.check:
        stale = sorted(n for n, text in files.items()
                       if not (args.out / n).is_file() or (args.out / n).read_bytes() != text.encode())
        if stale:
            log.error("stale in %s: %s (rerun without --check)", args.out, ", ".join(stale))
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_bytes(text.encode())
    log.info("wrote %d files to %s", len(files), args.out)
    def link(name: str) -> str:
        return Path(os.path.relpath(args.out / name, args.docs)).as_posix()

    for chart in drawn:
        alt = chart.title + (f" ({chart.subtitle})" if chart.subtitle else "")
        print(f"![{alt}]({link(chart.filename)})")
    print(f"[Every run as a table]({link('fanout-table.md')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
