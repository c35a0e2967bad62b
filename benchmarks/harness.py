"""`make bench SF=<n>`: time the warehouse at a scale factor against a plain-DuckDB floor.

    python -m benchmarks.harness --scale 1 [--format parquet] [--seed 7] [--keep]

1. Generates the extracts once into benchmarks/cache/sf<n>/ (daily layout, daily_days=1: a full-history
   dump folder and one new day), reused while the configuration is the same.
2. Runs, each in a fresh subprocess (benchmarks/runner.py: the whole Dagster job in-process, ephemeral
   instance, its own DAGSTER_HOME, warehouse and dbt target under benchmarks/cache/runs/):
   a. the full build: the job on the dump's partition;
   b. the daily incremental run: the job on the next day's partition, on top of (a)'s warehouse;
   c. the floor (benchmarks/floor.sql) on the dump alone, then on the dump and the new day;
   d. benchmarks/funnel_vs_pandas.py on the warehouse (b) left.
3. Writes benchmarks/results/sf<n>-<timestamp>.json and .md and prints the summary with the ratios.

Time per stage comes from the run's STEP_START / STEP_SUCCESS events, summed per asset group (checks
count with the asset they check). Peak RSS is what `wait4` reports for the subprocess: the largest
single process of its tree (the Dagster process, or the dbt process it waited for), not their sum, when
it is above the harness's own peak (a child's figure starts from its parent's, see `measure`); the
harness also samples the live tree every 0.2 s: the largest single process's RSS (step processes are
not all waited for by the runner, so wait4 can miss them) and the tree's summed PSS ("tree, sampled":
proportional set size, so pages a forked step process shares with the fork server count once).
Disk is sampled with it: the free space of the file system holding the run folder, so a run reports the
most it took at once (the warehouse's growth, DuckDB's spill files and the published copy; anything else
writing to the same disk counts too) and how low the free space went, in all and per step.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE = REPO_ROOT / "benchmarks" / "cache"
RESULTS = REPO_ROOT / "benchmarks" / "results"
STAGES = ("ingestion", "dbt", "funnel", "forecast", "client_base", "action_plan", "publish")
# The five marts dbt builds and the floor recomputes.
DBT_MARTS = ("dim_clients", "dim_deals", "fct_stage_transitions", "fct_client_turnover", "fct_pipeline_daily")
TARGETS = {
    "full_vs_floor": 1.5,
    "peak_rss_mb": 4096,
    "incremental_share": 0.10,
}


# ------------------------------------------------------------------------------------------ helpers


def scale_label(scale: float) -> str:
    return f"{scale:g}"


def cache_dir(scale: float, file_format: str) -> Path:
    suffix = "" if file_format == "parquet" else f"-{file_format}"
    return CACHE / f"sf{scale_label(scale)}{suffix}"


def step_durations(events: list[dict]) -> dict[str, float]:
    """Seconds per step from STEP_START and its STEP_SUCCESS / STEP_FAILURE (a step retried counts each
    attempt); a step that started and never ended is left out."""
    started: dict[str, float] = {}
    durations: dict[str, float] = {}
    for event in sorted(events, key=lambda e: e["timestamp"]):
        step, kind = event["step"], event["event"]
        if kind == "STEP_START":
            started[step] = event["timestamp"]
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and step in started:
            durations[step] = durations.get(step, 0.0) + event["timestamp"] - started.pop(step)
    return durations


def stage_seconds(durations: dict[str, float], groups: dict[str, str]) -> dict[str, float]:
    """Step seconds summed per stage (asset group), in pipeline order; unknown steps under `other`."""
    totals: dict[str, float] = {}
    for step, seconds in durations.items():
        stage = groups.get(step, "other")
        totals[stage] = totals.get(stage, 0.0) + seconds
    ordered = {stage: totals.pop(stage) for stage in STAGES if stage in totals}
    return ordered | dict(sorted(totals.items()))


def peak_by_step(events: list[dict], samples: list[tuple[float, int]]) -> dict[str, tuple[float, float]]:
    """Per step, from the samples taken while it ran (bytes, reported in MB): the largest, and how far it
    rose above the last sample before the step started (what the step itself added and kept while
    running). The samples are the tree's PSS or the disk the run has taken."""
    spans: dict[str, list[float]] = {}
    for event in sorted(events, key=lambda e: e["timestamp"]):
        if event["event"] == "STEP_START":
            spans.setdefault(event["step"], []).append(event["timestamp"])
        elif event["step"] in spans and len(spans[event["step"]]) % 2 == 1:
            spans[event["step"]].append(event["timestamp"])
    found: dict[str, tuple[float, float]] = {}
    for step, times in spans.items():
        for start, end in zip(times[0::2], times[1::2], strict=False):
            inside = [value for at, value in samples if start <= at <= end]
            if not inside:
                continue
            before = [value for at, value in samples if at < start]
            peak = max(inside) / 2**20
            growth = peak - (before[-1] / 2**20 if before else 0.0)
            if step in found:  # a retried step: its worst attempt
                peak, growth = max(found[step][0], peak), max(found[step][1], growth)
            found[step] = (peak, growth)
    return found


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def parse_pandas_output(text: str) -> dict:
    """The figures benchmarks/funnel_vs_pandas.py prints: seconds and peak RSS per engine, agreement."""
    found: dict = {}
    for engine in ("polars", "pandas"):
        match = re.search(rf"^{engine}: ([\d.]+) s, peak RSS (\d+) MB", text, re.MULTILINE)
        if match:
            found[engine] = {"seconds": float(match.group(1)), "peak_rss_mb": float(match.group(2))}
    agree = re.search(r"^agree: (\w+)", text, re.MULTILINE)
    found["agree"] = None if agree is None else agree.group(1) == "yes"
    if "polars" in found and "pandas" in found:
        found["time_ratio"] = ratio(found["pandas"]["seconds"], found["polars"]["seconds"])
        found["rss_ratio"] = ratio(found["pandas"]["peak_rss_mb"], found["polars"]["peak_rss_mb"])
    return found


def compare_marts(pipeline_rows: dict[str, int], floor_rows: dict[str, int]) -> dict[str, dict]:
    """Rows per dbt mart in the pipeline and in the floor, and their difference (floor - pipeline)."""
    return {
        mart: {
            "pipeline": pipeline_rows.get(mart),
            "floor": floor_rows.get(mart),
            "difference": None
            if pipeline_rows.get(mart) is None or floor_rows.get(mart) is None
            else floor_rows[mart] - pipeline_rows[mart],
        }
        for mart in DBT_MARTS
    }


def compare_checksums(pipeline: dict, floor: dict, tolerance: float = 1e-6) -> list[str]:
    """Column sums that differ by more than `tolerance` relative: where the floor's figures disagree."""
    problems = []
    for mart, columns in floor.items():
        for column, value in columns.items():
            other = pipeline.get(mart, {}).get(column)
            if value is None and other is None:
                continue
            if value is None or other is None or abs(value - other) > tolerance * (1 + abs(other)):
                problems.append(f"{mart}.{column}: pipeline {other}, floor {value}")
    return problems


# -------------------------------------------------------------------------------------- measuring


@dataclass
class Measured:
    seconds: float
    returncode: int
    peak_rss_mb: float
    tree_rss_sampled_mb: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    log: str
    samples: list[tuple[float, int]]
    """(wall-clock time, summed PSS of the live tree in bytes), every 0.2 s."""
    disk_free_start: int | None = None
    """Free bytes on the sampled file system when the command started (None: disk not sampled)."""
    disk_samples: list[tuple[float, int]] = field(default_factory=list)
    """(wall-clock time, bytes taken since the start: free at the start minus free now), every 0.2 s."""

    def disk_summary(self, events: list[dict]) -> dict | None:
        """The most the run took of the disk at once and the lowest free space (GB), and per step
        (top five by rise) the most taken while it ran and its rise (MB): None if not sampled."""
        if self.disk_free_start is None:
            return None
        taken = max((value for _, value in self.disk_samples), default=0)
        by_step = sorted(peak_by_step(events, self.disk_samples).items(), key=lambda kv: -kv[1][1])
        return {
            "free_start_gb": self.disk_free_start / 2**30,
            "taken_peak_gb": taken / 2**30,
            "free_lowest_gb": (self.disk_free_start - taken) / 2**30,
            "mb_by_step": dict(by_step[:5]),
        }


def _tree_memory_bytes(root_pid: int) -> tuple[int, int]:
    """(summed PSS of a process and its live descendants, largest single RSS among them), from /proc
    ((0, 0) where /proc is missing)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * page
    pss_total, largest, todo = 0, 0, [root_pid]
    while todo:
        pid = todo.pop()
        largest = max(largest, rss.get(pid, 0))
        pss_total += _pss_bytes(pid, rss.get(pid, 0))
        todo.extend(children.get(pid, []))
    return pss_total, largest


def _proc_kib_field(path: str, field: str) -> int | None:
    """A `Field:   123 kB` line of a /proc file, in bytes (None where the file or the line is missing)."""
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _pss_bytes(pid: int, fallback: int) -> int:
    pss = _proc_kib_field(f"/proc/{pid}/smaps_rollup", "Pss:")
    return fallback if pss is None else pss


def own_high_water_bytes() -> int:
    """This process's peak RSS (VmHWM of its memory map, from /proc; 0 without /proc)."""
    return _proc_kib_field("/proc/self/status", "VmHWM:") or 0


def measure(
    command: list[str], log: Path, env: dict[str, str] | None = None, disk: Path | None = None
) -> Measured:
    """Run `command` to the end; wall time, exit code and peak memory of its process tree, and with
    `disk` (a folder) how much of the file system holding it the command took at most.

    A child's `ru_maxrss` starts from its parent's: Linux carries the peak RSS of the memory map a
    process had before `exec` (a copy of this process's, or this process's own under vfork) into the
    figure `wait4` reports. So it is exact only when it is above this process's own peak; otherwise the
    child's true peak is somewhere below it and only the /proc samples are kept. This process's peak is
    read after the child ended: it only grows, so it is at least what the child started from.
    """
    load_before = os.getloadavg()
    log.parent.mkdir(parents=True, exist_ok=True)
    disk_free_start = shutil.disk_usage(disk).free if disk is not None else None
    with log.open("w", encoding="utf-8") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
        samples: list[tuple[float, int]] = []
        disk_samples: list[tuple[float, int]] = []
        largest: list[int] = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                pss, single = _tree_memory_bytes(process.pid)
                samples.append((time.time(), pss))
                largest[0] = max(largest[0], single)
                if disk_free_start is not None:
                    disk_samples.append((time.time(), disk_free_start - shutil.disk_usage(disk).free))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4 on this child: its rusage covers it and every descendant it waited for (dbt).
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    waited_peak = usage.ru_maxrss * 1024  # KiB on Linux
    if waited_peak <= own_high_water_bytes():
        waited_peak = 0  # not the child's own (see above)
    return Measured(
        seconds=seconds,
        returncode=process.returncode,
        peak_rss_mb=max(waited_peak, largest[0]) / 2**20,
        tree_rss_sampled_mb=max((rss for _, rss in samples), default=0) / 2**20,
        load_before=load_before,
        load_after=os.getloadavg(),
        log=str(log.relative_to(REPO_ROOT)) if log.is_relative_to(REPO_ROOT) else str(log),
        samples=samples,
        disk_free_start=disk_free_start,
        disk_samples=disk_samples,
    )


def ensure_data(
    scale: float, seed: int, file_format: str, shards: int | None = None
) -> tuple[Path, dict, float]:
    """The cached extracts (generated when missing or made with another configuration).

    Above scale 10 the generator works in shards (independent worlds of scale / shards, disjoint
    keys, concatenated per folder and table) so its memory stays that of one shard: by default one
    shard per 5 scale units (SF100: 20 shards of SF5, 11 minutes and 4.6 GB peak RSS on 2 cores,
    4.1 GB on disk). At scale 10 and below one world, as before. The cache is reused while scale,
    seed, format, layout and shards match its manifest. Returned: the folder, the manifest's
    configuration and row counts (its defect lists are large at scale and not needed here), and the
    seconds spent generating.
    """
    import math

    from data.generator import GeneratorConfig, generate

    if shards is None:
        shards = 1 if scale <= 10 else math.ceil(scale / 5)
    folder = cache_dir(scale, file_format)
    manifest_path = folder / "manifest.json"
    wanted = {"scale": scale, "seed": seed, "format": file_format, "daily_days": 1, "layout": "daily"}

    def summary() -> dict:
        manifest = json.loads(manifest_path.read_text())
        return {k: manifest[k] for k in ("generator_version", "config", "row_counts")}

    if manifest_path.exists():
        manifest = summary()
        config = manifest["config"]
        if all(config.get(k) == v for k, v in wanted.items()) and config.get("shards", 1) == shards:
            return folder, manifest, 0.0
        manifest_path.unlink()  # a generation cut short must not leave a manifest that matches
    print(
        f"generating SF{scale_label(scale)} ({file_format}, {shards} shard(s)) into {folder} ...", flush=True
    )
    started = time.perf_counter()
    config = GeneratorConfig(
        scale=scale, seed=seed, format=file_format, daily_days=1, layout="daily", shards=shards
    )
    # In a process of its own: generating SF10 takes several GB, which this process would keep as its
    # peak RSS, and every run measured after it would start from (see `measure`).
    generation = multiprocessing.get_context("spawn").Process(target=generate, args=(config, folder))
    generation.start()
    generation.join()
    if generation.exitcode != 0:
        raise SystemExit(f"generating the data failed (exit code {generation.exitcode}); see above")
    return folder, summary(), time.perf_counter() - started


# ---------------------------------------------------------------------------------------- summary


def summarise_run(report: dict, measured: Measured) -> dict:
    durations = step_durations(report["events"])
    stages = stage_seconds(durations, report["step_groups"])
    steps_total = sum(durations.values())
    marts = report["rows"].get("marts", {})
    ingestion = stages.get("ingestion")
    return {
        "success": report["success"],
        "failure": report.get("failure"),
        "wall_seconds": measured.seconds,
        "definitions_seconds": report["definitions_seconds"],
        "run_seconds": report["run_seconds"],
        "stages": stages,
        "orchestration_seconds": report["run_seconds"] - steps_total,
        "slowest_steps": dict(sorted(durations.items(), key=lambda kv: -kv[1])[:8]),
        "step_seconds": dict(sorted(durations.items(), key=lambda kv: -kv[1])),
        "dbt": report.get("dbt"),
        "rss_mb_by_step": dict(
            sorted(peak_by_step(report["events"], measured.samples).items(), key=lambda kv: -kv[1][1])[:8]
        ),
        "disk": measured.disk_summary(report["events"]),
        "rows_loaded": report["rows_loaded"],
        "raw_rows": sum(report["rows"].get("raw", {}).values()),
        "mart_rows": sum(marts.values()),
        "dbt_mart_rows": {m: marts.get(m) for m in DBT_MARTS},
        "ingest_rows_per_second": ratio(report["rows_loaded"], ingestion),
        "mart_rows_per_second": ratio(sum(marts.values()), report["run_seconds"]),
        "peak_rss_mb": measured.peak_rss_mb,
        "tree_rss_sampled_mb": measured.tree_rss_sampled_mb,
        "warehouse_mb": report["warehouse_bytes"] / 2**20,
        "load_before": measured.load_before,
        "load_after": measured.load_after,
        "log": measured.log,
    }


def figures(results: dict) -> dict:
    """The ratios the issue's targets are about."""
    full, incr = results["full_build"], results["incremental"]
    floor = results["floor"]
    dbt = full["stages"].get("dbt")
    ingest_dbt = (full["stages"].get("ingestion") or 0) + (dbt or 0)
    return {
        "full_vs_floor": ratio(full["run_seconds"], floor["seconds"]),
        "ingestion_dbt_vs_floor": ratio(ingest_dbt, floor["seconds"]),
        "dbt_vs_floor": ratio(dbt, floor["seconds"]),
        "incremental_share": ratio(incr["run_seconds"], full["run_seconds"]),
        "incremental_vs_floor_recompute": ratio(
            incr["run_seconds"], results["floor_with_new_day"]["seconds"]
        ),
        "peak_rss_mb": max(full["peak_rss_mb"], full["tree_rss_sampled_mb"]),
        "pandas_vs_polars_time": results["pandas"].get("time_ratio"),
    }


def _fmt(value, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    return f"{value:,}{suffix}"


def results_markdown(results: dict) -> str:
    """The results of one harness run as a Markdown report."""
    full, incr, floor = results["full_build"], results["incremental"], results["floor"]
    fig = results["figures"]
    sf = results["scale"]
    lines = [
        f"# Benchmark SF{sf} ({results['format']}), {results['started_at']}",
        "",
        f"Machine: {results['machine']['cpus']} CPUs, {results['machine']['memory_gb']:.0f} GB; "
        f"DuckDB memory limit {results['memory_limit']}, {results['threads']} threads. "
        f"Load average at start {results['load_at_start'][0]:.2f}. "
        f"Data: {full['raw_rows']:,} raw rows after the full build, "
        f"{incr['rows_loaded']:,} rows in the new day.",
        "",
        *[f"**A run failed**: {run['failure']}\n" for run in (full, incr) if not run["success"]],
        "## Per stage (seconds, from the run's step events)",
        "",
        "| stage | full build | incremental |",
        "|---|---:|---:|",
    ]
    for stage in dict.fromkeys([*full["stages"], *incr["stages"]]):
        lines.append(f"| {stage} | {_fmt(full['stages'].get(stage))} | {_fmt(incr['stages'].get(stage))} |")
    lines += [
        f"| orchestration (run minus steps) | {_fmt(full['orchestration_seconds'])} | "
        f"{_fmt(incr['orchestration_seconds'])} |",
        f"| **run** | **{_fmt(full['run_seconds'])}** | **{_fmt(incr['run_seconds'])}** |",
        f"| loading definitions (incl. dbt parse) | {_fmt(full['definitions_seconds'])} | "
        f"{_fmt(incr['definitions_seconds'])} |",
        f"| process wall (incl. imports) | {_fmt(full['wall_seconds'])} | {_fmt(incr['wall_seconds'])} |",
        f"| peak RSS, largest process (MB) | {_fmt(full['peak_rss_mb'], 0)} | "
        f"{_fmt(incr['peak_rss_mb'], 0)} |",
        f"| peak PSS, tree sampled (MB) | {_fmt(full['tree_rss_sampled_mb'], 0)} | "
        f"{_fmt(incr['tree_rss_sampled_mb'], 0)} |",
        f"| disk taken at most, GB (free at start -> lowest) | {_disk_cell(full)} | {_disk_cell(incr)} |",
        f"| raw rows loaded / s (ingestion) | {_fmt(full['ingest_rows_per_second'], 0)} | "
        f"{_fmt(incr['ingest_rows_per_second'], 0)} |",
        f"| mart rows / s (run) | {_fmt(full['mart_rows_per_second'], 0)} | "
        f"{_fmt(incr['mart_rows_per_second'], 0)} |",
        "",
        "## Floor and ratios",
        "",
        "| figure | value | target |",
        "|---|---:|---|",
        f"| floor (plain DuckDB, dump only), s | {_fmt(floor['seconds'])} | |",
        f"| floor peak RSS, MB | {_fmt(floor['peak_rss_mb'], 0)} | |",
        f"| full build run / floor | {_fmt(fig['full_vs_floor'], 2)}x | "
        f"<= {TARGETS['full_vs_floor']}x (SF10) |",
        f"| (ingestion + dbt) / floor | {_fmt(fig['ingestion_dbt_vs_floor'], 2)}x | |",
        f"| dbt stage / floor | {_fmt(fig['dbt_vs_floor'], 2)}x | |",
        f"| peak RSS, MB | {_fmt(fig['peak_rss_mb'], 0)} | < {TARGETS['peak_rss_mb']} (SF10) |",
        f"| incremental run / full build run | {_fmt(fig['incremental_share'], 3)} | "
        f"< {TARGETS['incremental_share']} (SF10) |",
        f"| incremental run / floor recompute (dump + day, "
        f"{_fmt(results['floor_with_new_day']['seconds'])} s) | "
        f"{_fmt(fig['incremental_vs_floor_recompute'], 2)}x | |",
        f"| funnel_conversion pandas / Polars time | {_fmt(fig['pandas_vs_polars_time'], 1)}x | |",
    ]
    pandas = results["pandas"]
    if "polars" in pandas:
        lines.append(
            "| funnel_conversion peak RSS Polars / pandas, MB | "
            f"{_fmt(pandas['polars']['peak_rss_mb'], 0)} / {_fmt(pandas['pandas']['peak_rss_mb'], 0)} | |"
        )
    lines += [
        "",
        "## Do the floor's marts agree with the pipeline's? (rows after the full build)",
        "",
        "| mart | pipeline | floor | floor - pipeline |",
        "|---|---:|---:|---:|",
    ]
    for mart, row in results["mart_rows"].items():
        lines.append(
            f"| {mart} | {_fmt(row['pipeline'])} | {_fmt(row['floor'])} | {_fmt(row['difference'])} |"
        )
    problems = results["checksum_differences"]
    lines += ["", "Column sums compared: " + ("all agree." if not problems else "; ".join(problems))]
    lines += [
        "",
        "## Slowest steps (s)",
        "",
        "| full build | seconds | incremental | seconds |",
        "|---|---:|---|---:|",
        *[
            f"| {a} | {_fmt(x)} | {b} | {_fmt(y)} |"
            for (a, x), (b, y) in zip(
                full["slowest_steps"].items(), incr["slowest_steps"].items(), strict=False
            )
        ],
        "",
        *dbt_lines(full),
        "## Memory by step of the full build (sampled tree PSS, MB; steps that added most)",
        "",
        "| step | largest while it ran | rise above the RSS before it |",
        "|---|---:|---:|",
        *[
            f"| {step} | {_fmt(peak, 0)} | {_fmt(growth, 0)} |"
            for step, (peak, growth) in full.get("rss_mb_by_step", {}).items()
        ],
        "",
        *_disk_lines(full),
        "## Slowest floor statements (s)",
        "",
        "| statement | seconds |",
        "|---|---:|",
        *[
            f"| {name} | {_fmt(s, 2)} |"
            for name, s in sorted(floor["statements"].items(), key=lambda kv: -kv[1])[:6]
        ],
    ]
    return "\n".join(lines) + "\n"


def _disk_cell(run: dict) -> str:
    disk = run.get("disk")
    if not disk:
        return "n/a"
    return (
        f"{_fmt(disk['taken_peak_gb'], 2)} ({_fmt(disk['free_start_gb'], 1)} -> "
        f"{_fmt(disk['free_lowest_gb'], 1)})"
    )


def _disk_lines(run: dict) -> list[str]:
    """Which steps of the full build took the most disk (from the free-space samples)."""
    disk = run.get("disk")
    if not disk:
        return []
    return [
        "## Disk by step of the full build (sampled free space, MB; steps that took most)",
        "",
        "| step | most taken while it ran (since the run started) | rise above the level before it |",
        "|---|---:|---:|",
        *[
            f"| {step} | {_fmt(peak, 0)} | {_fmt(rise, 0)} |"
            for step, (peak, rise) in disk["mb_by_step"].items()
        ],
        "",
    ]


def dbt_lines(run: dict) -> list[str]:
    """Where the dbt stage's time goes, from dbt's run_results.json."""
    dbt = run.get("dbt")
    if not dbt:
        return []
    by_type = dbt["seconds_by_type"]
    step = run["stages"].get("dbt")
    return [
        "## Inside the dbt stage of the full build (dbt's run_results.json, s)",
        "",
        f"dbt's elapsed time {_fmt(dbt['elapsed_seconds'])}: models {_fmt(by_type.get('model'))}, "
        f"data tests {_fmt(by_type.get('test'))}, unit tests {_fmt(by_type.get('unit_test'))}; "
        f"the step took {_fmt(step)} (the rest is starting dbt, parsing and streaming its events).",
        "",
        "| node | seconds |",
        "|---|---:|",
        *[f"| {node} | {_fmt(s, 2)} |" for node, s in dbt["slowest"].items()],
        "",
    ]


def summary_lines(results: dict) -> list[str]:
    full, incr, fig = results["full_build"], results["incremental"], results["figures"]
    stages = ", ".join(f"{k} {v:.1f}" for k, v in full["stages"].items())
    return [
        f"SF{results['scale']} full build: run {full['run_seconds']:.1f} s ({stages}); "
        f"peak RSS {fig['peak_rss_mb']:.0f} MB",
        f"incremental: run {incr['run_seconds']:.1f} s = {fig['incremental_share']:.1%} of the full build",
        f"floor: {results['floor']['seconds']:.1f} s; full / floor {_fmt(fig['full_vs_floor'], 2)}x, "
        f"(ingestion + dbt) / floor {_fmt(fig['ingestion_dbt_vs_floor'], 2)}x, "
        f"dbt / floor {_fmt(fig['dbt_vs_floor'], 2)}x",
        f"rows: {full['ingest_rows_per_second'] or 0:,.0f} raw rows/s loaded, "
        f"{full['mart_rows_per_second'] or 0:,.0f} mart rows/s",
        f"disk: the full build took {_disk_cell(full)} GB at most (free at start -> lowest)",
        f"pandas / Polars (funnel_conversion): {_fmt(fig['pandas_vs_polars_time'], 1)}x time, "
        f"agree: {results['pandas'].get('agree')}",
        "floor marts agree with the pipeline's: "
        + ("yes" if not results["checksum_differences"] and all(
            r["difference"] == 0 for r in results["mart_rows"].values()) else "NO (see the .md)"),
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------- main


def _child_env(dagster_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(dagster_home)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--memory-limit", default=os.environ.get("FUNNEL_DUCKDB_MEMORY_LIMIT", "2GB"))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("FUNNEL_DUCKDB_THREADS", "2")))
    parser.add_argument("--keep", action="store_true", help="keep the run folder (warehouses, logs)")
    parser.add_argument("--skip-pandas", action="store_true", help="do not run funnel_vs_pandas")
    parser.add_argument(
        "--shards", type=int, help="generate the data in this many shards (default: 1 up to SF10, then SF/5)"
    )
    args = parser.parse_args()

    started_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    landing_root, manifest, generation_seconds = ensure_data(args.scale, args.seed, args.format, args.shards)
    landing = landing_root / "extracts"
    dates = sorted(p.name for p in landing.iterdir() if p.is_dir())
    dump, new_day = dates[0], dates[1]
    run_dir = CACHE / "runs" / f"sf{scale_label(args.scale)}-{started_at}"
    shutil.rmtree(run_dir, ignore_errors=True)
    dump_only = run_dir / "landing_dump"
    dump_only.mkdir(parents=True)
    (dump_only / dump).symlink_to(landing / dump, target_is_directory=True)
    py = sys.executable
    limits = ["--memory-limit", args.memory_limit, "--threads", str(args.threads)]
    load_at_start = os.getloadavg()
    if load_at_start[0] > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load_at_start[0]:.2f} at start: timings will be noisy", flush=True)

    def pipeline(partition: str, name: str) -> tuple[dict, Measured]:
        out = run_dir / f"{name}.json"
        command = [py, "-m", "benchmarks.runner", "--landing", str(landing), "--root",
                   str(run_dir / "pipeline"), "--partition", partition, "--first-date", dump,
                   "--out", str(out), *limits]  # fmt: skip
        print(f"{name}: the job on {partition} ...", flush=True)
        measured = measure(
            command, run_dir / f"{name}.log", _child_env(run_dir / f"dagster_home_{name}"), disk=run_dir
        )
        if measured.returncode != 0 and not out.exists():
            raise SystemExit(f"{name} crashed (exit {measured.returncode}); see {measured.log}")
        return json.loads(out.read_text()), measured

    def floor(landing_dir: Path, name: str) -> dict:
        out = run_dir / f"{name}.json"
        command = [py, "-m", "benchmarks.floor", "--landing", str(landing_dir), "--db",
                   str(run_dir / name / "floor.duckdb"), "--format", args.format, "--out", str(out),
                   *limits]  # fmt: skip
        folders = ", ".join(sorted(p.name for p in landing_dir.iterdir()))
        print(f"{name}: floor.sql on {folders} ...", flush=True)
        measured = measure(command, run_dir / f"{name}.log")
        if measured.returncode != 0:
            raise SystemExit(f"the floor failed (exit {measured.returncode}); see {measured.log}")
        shutil.rmtree(run_dir / name, ignore_errors=True)
        return json.loads(out.read_text()) | {
            "peak_rss_mb": measured.peak_rss_mb,
            "wall_seconds": measured.seconds,
            "load_before": measured.load_before,
        }

    full_report, full_measured = pipeline(dump, "full_build")
    full = summarise_run(full_report, full_measured)
    if not full["success"]:
        print(f"the full build failed: {full['failure']}", file=sys.stderr)
    pipeline_sums = _pipeline_checksums(run_dir / "pipeline" / "funnel.duckdb")
    incr_report, incr_measured = pipeline(new_day, "incremental")
    incr = summarise_run(incr_report, incr_measured)
    floor_dump = floor(dump_only, "floor")
    floor_all = floor(landing, "floor_with_new_day")

    pandas: dict = {}
    if not args.skip_pandas:
        print("funnel_vs_pandas on the built warehouse ...", flush=True)
        log = run_dir / "funnel_vs_pandas.log"
        warehouse = run_dir / "pipeline" / "funnel.duckdb"
        measured = measure([py, "-m", "benchmarks.funnel_vs_pandas", "--warehouse", str(warehouse)], log)
        pandas = parse_pandas_output(log.read_text()) | {"returncode": measured.returncode}

    results = {
        "scale": scale_label(args.scale),
        "format": args.format,
        "seed": args.seed,
        "started_at": started_at,
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
            "python": sys.version.split()[0],
        },
        "memory_limit": args.memory_limit,
        "threads": args.threads,
        "load_at_start": load_at_start,
        "generation_seconds": generation_seconds,
        "dates": {"dump": dump, "new_day": new_day},
        "extract_rows": {t: sum(c.values()) for t, c in manifest["row_counts"].items()},
        "new_day_rows": {t: c.get(new_day, 0) for t, c in manifest["row_counts"].items()},
        "full_build": full,
        "incremental": incr,
        "floor": floor_dump,
        "floor_with_new_day": floor_all,
        "pandas": pandas,
        "mart_rows": compare_marts(full["dbt_mart_rows"], floor_dump["rows"]),
        "checksum_differences": compare_checksums(pipeline_sums, floor_dump["checksums"]),
    }
    results["figures"] = figures(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"sf{scale_label(args.scale)}-{started_at}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1, default=_json_default) + "\n")
    stem.with_suffix(".md").write_text(results_markdown(results))
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    print("\n".join(summary_lines(results)))
    print(f"results: {stem.with_suffix('.md').relative_to(REPO_ROOT)} (and .json)")
    return 0 if full["success"] and incr["success"] else 1


def _pipeline_checksums(warehouse: Path) -> dict:
    """The floor's column sums, on the pipeline's marts right after the full build."""
    import duckdb

    from benchmarks.floor import mart_checksums

    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return mart_checksums(conn)


def _json_default(value):
    raise TypeError(type(value))


if __name__ == "__main__":
    sys.exit(main())
