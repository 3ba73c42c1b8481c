"""One table per scenario: a column per measured phase, a row per metric (bench/README.md says
what each row means). Printed as markdown and saved as .md and .json under bench/results/."""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    ms = seconds * 1000
    return f"{ms:,.0f}" if abs(ms) >= 100 else f"{ms:.1f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _group(column: dict, name: str, key: str) -> str:
    group = column["groups"].get(name)
    if group is None or not group["rss_peak_mib"]:  # no such process in this stack
        return "—"
    return _num(group[key])


def _added(column: dict, q: str) -> str:
    added = column.get("added_latency_s")
    return _ms(added[q]) if added else ""


def _busy(column: dict) -> str:
    busy, capacity = column["machine_busy_s"], column["machine_capacity_s"]
    return f"{busy:.1f} of {capacity:.1f} ({100 * busy / capacity:.0f}%)" if capacity else "—"


ROWS = [
    ("requests", lambda c: str(c["requests"])),
    ("wall s", lambda c: _num(c["wall_s"])),
    ("requests/s", lambda c: _num(c["rps"])),
    ("requests/s, first 99% of answers", lambda c: _num(c["rps_99"])),
    *((f"latency {q} ms", lambda c, q=q: _ms(c["latency_s"][q])) for q in ("p50", "p90", "p99", "max")),
    *((f"added latency {q} ms", lambda c, q=q: _added(c, q)) for q in ("p50", "p90", "p99")),
    ("statuses", lambda c: " ".join(f"{k}×{v}" for k, v in c["statuses"].items())),
    ("ratio to floor (req/s)", lambda c: f"{c['floor_ratio']:.3f}" if c.get("floor_ratio") is not None else ""),
    ("provider calls / peak in flight", lambda c: f"{c['provider_calls']} / {c['provider_peak_in_flight']}"),
    ("hub idle RSS MiB (web + worker)", lambda c: _num(c.get("hub_idle_rss_mib"))),
    ("hub idle PSS MiB (web + worker)", lambda c: _num(c.get("hub_idle_pss_mib"))),
    ("web peak RSS MiB", lambda c: _group(c, "web", "rss_peak_mib")),
    ("web CPU s", lambda c: _group(c, "web", "cpu_s")),
    ("worker peak RSS MiB", lambda c: _group(c, "worker", "rss_peak_mib")),
    ("worker CPU s", lambda c: _group(c, "worker", "cpu_s")),
    ("hub CPU ms/request", lambda c: _num(c["hub_cpu_ms_per_request"])),
    ("PostgreSQL (bench db) CPU s", lambda c: _group(c, "postgres", "cpu_s")),
    ("redis CPU s", lambda c: _group(c, "redis", "cpu_s")),
    ("moto (S3) CPU s", lambda c: _group(c, "moto", "cpu_s")),
    ("fake provider CPU s", lambda c: _group(c, "provider", "cpu_s")),
    ("load generator CPU s", lambda c: _num(c["loadgen_cpu_s"])),
    ("bench runner CPU s", lambda c: _group(c, "runner", "cpu_s")),
    ("rest of machine CPU s", lambda c: _num(c["rest_cpu_s"])),
    ("machine busy CPU s", _busy),
    ("PG connections peak db / server", lambda c: f"{c['pg_connections_peak_db']} / {c['pg_connections_peak_server']}"),
    (
        "PG backends waiting on a lock peak / mean",
        lambda c: f"{c['pg_lock_waits_peak']} / {c['pg_lock_waits_mean']:.1f}",
    ),
]


@dataclass
class Table:
    scenario: str
    title: str
    columns: list[dict] = field(default_factory=list)
    extra_rows: list[tuple[str, list[str]]] = field(default_factory=list)  # one value per column
    notes: list[str] = field(default_factory=list)
    standard_rows: bool = True  # ROWS, for columns that are measured phases (bench.measure)

    def markdown(self, command: str) -> str:
        header = ["metric", *(c["label"] for c in self.columns)]
        body = [[label, *(fmt(c) for c in self.columns)] for label, fmt in (ROWS if self.standard_rows else [])]
        body += [[label, *values] for label, values in self.extra_rows]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            return (
                "| "
                + " | ".join(
                    cell.ljust(w) if i == 0 else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
                )
                + " |"
            )

        rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
        out = [
            f"$ {command}",
            "",
            f"### {self.scenario}: {self.title}",
            "",
            line(header),
            rule,
            *(line(row) for row in body),
        ]
        if self.notes:
            out += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(out) + "\n"

    def save(self, base: Path, command: str) -> str:
        text = self.markdown(command)
        base.parent.mkdir(parents=True, exist_ok=True)
        base.with_suffix(".md").write_text(text)
        columns = [{k: v for k, v in c.items() if k != "collected"} for c in self.columns]
        base.with_suffix(".json").write_text(
            json.dumps(
                {
                    "command": command,
                    "scenario": self.scenario,
                    "title": self.title,
                    "columns": columns,
                    "extra_rows": self.extra_rows,
                    "notes": self.notes,
                },
                indent=2,
            )
        )
        return text


_LEVEL = re.compile(r"\b(ERROR|CRITICAL|WARNING)\b|Traceback")
_ACCESS_5XX = re.compile(r'" 5\d\d ')


def log_notes(log_dir: Path) -> list[str]:
    """Per process log: ERROR/WARNING/Traceback counts, 5xx in the access log, first error lines."""
    notes = []
    for path in sorted(log_dir.glob("*.log")):
        counts: dict[str, int] = {}
        first: list[str] = []
        with open(path, errors="replace") as f:
            for line in f:
                match = _LEVEL.search(line)
                if _ACCESS_5XX.search(line):
                    counts["5xx"] = counts.get("5xx", 0) + 1
                if match:
                    kind = match.group(0)
                    counts[kind] = counts.get(kind, 0) + 1
                    if kind != "WARNING" and len(first) < 2:
                        first.append(line.strip()[:200])
        if counts:
            summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            notes.append(f"log {path.name}: {summary}" + "".join(f"; e.g. `{line}`" for line in first))
    return notes
