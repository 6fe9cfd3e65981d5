"""bench.plot: the charts and table drawn from fan-out records, checked on the files it writes."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench import plot

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path(__file__).parent / "data" / "fanout-sample.jsonl"
SVG = "{http://www.w3.org/2000/svg}"
CHARTS = {f"fanout-{metric}-vs-{axis}.svg" for metric in ("delivered-per-s", "p99-ms", "cpu-us-per-delivery")
          for axis in ("rate", "clients")} | {"fanout-workers-delivered-per-s.svg",
                                              "fanout-workers-cpu-us-per-delivery.svg"}


def draw(out: Path, source: Path = SAMPLE, *extra: str) -> int:
    return plot.main([str(source), "--out", str(out), "--docs", str(out.parent), *extra])


def series(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()
    return {g.attrib["data-series"]: g for g in root.iter(f"{SVG}g") if g.get("class") == "series"}


def legend(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    group = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "legend")
    return [t.text or "" for t in group.iter(f"{SVG}text")]


def markers(group: ET.Element) -> list[ET.Element]:
    return [e for e in group if e.get("class") == "marker"]


def polyline_points(group: ET.Element) -> int:
    lines = group.findall(f"{SVG}polyline")
    return sum(len(line.attrib["points"].split()) for line in lines)


def test_every_chart_and_the_table_are_written_and_linked(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "img"
    assert draw(out) == 0
    assert {p.name for p in out.iterdir()} == CHARTS | {"fanout-table.md"}
    for name in CHARTS:
        root = ET.parse(out / name).getroot()  # well-formed XML
        assert root.tag == f"{SVG}svg"
        background = root.find(f"{SVG}rect")
        assert background is not None and background.get("fill") == "#ffffff"
    printed = capsys.readouterr().out.splitlines()
    assert sorted(line.rsplit("(", 1)[1] for line in printed if line.startswith("![")) == sorted(
        f"img/{name})" for name in CHARTS)
    assert printed[-1] == "[Every run as a table](img/fanout-table.md)"
    rows = (out / "fanout-table.md").read_text().splitlines()
    assert len(rows) == 2 + len(SAMPLE.read_text().splitlines())  # header, rule, every run
    null_p99 = "| after | per frame | raw | 1 | 1,000 | 1,000 | 640,000 | 0 | - | - | 3.60 | 2 | a1b2c3d |"
    assert null_p99 in rows


def test_legend_names_label_and_mode_and_notes_repeated_runs(tmp_path: Path) -> None:
    out = tmp_path / "img"
    draw(out)
    expected = ["before, per frame", "before, batched", "after, per frame",
                "after, batched (median of up to 2 runs)"]
    assert legend(out / "fanout-p99-ms-vs-rate.svg") == expected
    assert list(series(out / "fanout-p99-ms-vs-rate.svg")) == expected
    assert "repeated runs: median" in (out / "fanout-p99-ms-vs-rate.svg").read_text()


def test_each_series_has_one_point_per_measured_x(tmp_path: Path) -> None:
    out = tmp_path / "img"
    draw(out)
    for name in ("fanout-delivered-per-s-vs-rate.svg", "fanout-cpu-us-per-delivery-vs-clients.svg"):
        groups = series(out / name)
        assert len(groups) == 4
        for group in groups.values():  # two rates (or two client counts) in the sample, per series
            assert len(markers(group)) == 2
            assert polyline_points(group) == 2
    # the two runs at 100 clients, 1000/s (after, batched) are one point at their median
    drawn = {c.filename: c for c in plot.charts(plot.load_runs(SAMPLE), clients=100, rate=1000)}
    after = drawn["fanout-p99-ms-vs-rate.svg"].series[3]
    assert [(p.x, p.y, p.lo, p.hi, p.reps) for p in after.points] == [
        (1000, 2.5, 2.1, 2.9, 2), (10000, 9.5, 9.5, 9.5, 1)]
    ranges = [e for e in series(out / "fanout-p99-ms-vs-rate.svg")[after.name] if e.get("class") == "range"]
    assert len(ranges) == 1


def test_a_null_p99_is_left_out_not_drawn_as_zero(tmp_path: Path) -> None:
    out = tmp_path / "img"
    draw(out)
    p99 = series(out / "fanout-p99-ms-vs-clients.svg")["after, per frame"]
    assert len(markers(p99)) == 1  # 1,000 clients had no latency sample
    assert polyline_points(p99) == 0
    drawn = {c.filename: c for c in plot.charts(plot.load_runs(SAMPLE), clients=100, rate=1000)}
    assert [p.x for p in drawn["fanout-p99-ms-vs-clients.svg"].series[2].points] == [100]
    cpu = series(out / "fanout-cpu-us-per-delivery-vs-clients.svg")["after, per frame"]
    assert len(markers(cpu)) == 2  # the same run's other figures are still drawn


def test_runs_with_several_workers_have_their_own_charts(tmp_path: Path) -> None:
    out = tmp_path / "img"
    draw(out)
    workers = series(out / "fanout-workers-delivered-per-s.svg")
    assert list(workers) == ["after, batched (median of up to 2 runs)"]  # 1 worker (2 runs), 2 workers
    assert len(markers(workers["after, batched (median of up to 2 runs)"])) == 2
    drawn = {c.filename: c for c in plot.charts(plot.load_runs(SAMPLE), clients=100, rate=1000)}
    assert [p.x for p in drawn["fanout-workers-cpu-us-per-delivery.svg"].series[0].points] == [1, 2]
    # the 2-worker run is not among the one-process points
    assert drawn["fanout-cpu-us-per-delivery-vs-rate.svg"].series[3].points[0].reps == 2


def test_same_input_gives_the_same_bytes_and_check_finds_stale_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "img", tmp_path / "b" / "img"
    draw(first)
    draw(second)
    assert sorted(p.name for p in first.iterdir()) == sorted(p.name for p in second.iterdir())
    for path in first.iterdir():
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    assert draw(first, SAMPLE, "--check") == 0
    (first / "fanout-p99-ms-vs-rate.svg").write_text("<svg/>")
    assert draw(first, SAMPLE, "--check") == 1


def test_only_charts_with_points_are_written(tmp_path: Path) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text(SAMPLE.read_text().splitlines()[0] + "\n")  # before, per frame, 100 clients, 1000/s
    out = tmp_path / "img"
    assert draw(out, source) == 0
    assert {p.name for p in out.iterdir()} == {n for n in CHARTS if "workers" not in n} | {"fanout-table.md"}


def run_cli(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.plot", str(source), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def test_empty_input_is_a_one_line_error_with_exit_code_2(tmp_path: Path) -> None:
    source = tmp_path / "empty.jsonl"
    source.write_text("\n")
    done = run_cli(source, tmp_path / "img")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no records" in done.stderr
    assert not (tmp_path / "img").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"clients": True}, "line 2: field 'clients' must be int"),
    ({"p99_ms": "fast"}, "line 2: field 'p99_ms' must be float/int/null"),
    ({"label": "a|b"}, "line 2: field 'label'"),
    ({"workers": 0}, "line 2: field 'workers' must be between 1"),
])
def test_a_bad_record_names_its_line(tmp_path: Path, change: dict[str, object], message: str,
                                     caplog: pytest.LogCaptureFixture) -> None:
    lines = SAMPLE.read_text().splitlines()[:2]
    lines[1] = json.dumps({**json.loads(lines[1]), **change})
    source = tmp_path / "bad.jsonl"
    source.write_text("\n".join(lines) + "\n")
    assert draw(tmp_path / "img", source) == 2
    assert message in caplog.text
    del lines[1]
    missing = json.loads(lines[0])
    del missing["rate"]
    source.write_text(json.dumps(missing) + "\n")
    assert draw(tmp_path / "img", source) == 2
    assert "line 1: missing field 'rate'" in caplog.text
