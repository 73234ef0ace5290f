"""Benchmark the admin CLI's start-up: ``mailwarden --help`` and ``mailwarden domain list``.

What it measures, each command run as a new process the way an admin (or a script
looping over domains) runs it:
  wall     wall time of ``python -m mailwarden ...``: min and median over ``--runs``
           runs, after ``--warmup`` runs (page cache warm)
  imports  from one ``python -X importtime`` run: modules imported, the import time
           (sum of the top-level cumulative times), and which daemon stacks (Milter,
           asyncio, prometheus_client, http.server) were loaded

``--tree LABEL=SRC`` (repeatable) measures other source trees too, e.g. the last commit
exported with ``git archive HEAD src | tar -x -C /tmp/before``; the runs of all trees
are interleaved so that a busy machine slows them alike. Each tree gets a fresh SQLite
database with three domains, made by its own CLI in a temporary directory.

Usage:  python3 bench/bench_startup.py [--runs 20] [--tree before=/tmp/before/src]
            [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("Milter", "asyncio", "prometheus_client", "http.server")


def env(src: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(src)
    e.pop("MAILWARDEN_CONFIG", None)
    return e


def mailwarden(cfg: Path, *argv: str) -> list[str]:
    return [sys.executable, "-m", "mailwarden", "--config", str(cfg), *argv]


def setup(tmp: Path, src: Path) -> Path:
    tmp.mkdir()
    cfg = tmp / "mailwarden.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{tmp}/mw.db"\n[mail]\nroot = "{tmp}/mail"\n',
        encoding="utf-8",
    )
    run = [mailwarden(cfg, "db", "init")]
    run += [mailwarden(cfg, "domain", "add", d) for d in ("a.test", "b.test", "c.test")]
    for argv in run:
        subprocess.run(argv, env=env(src), check=True, capture_output=True)
    return cfg


def once(argv: list[str], src: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env(src), check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def imports(argv: list[str], src: Path) -> dict[str, object]:
    """Parse ``-X importtime``: modules loaded, top-level cumulative time, heavy ones."""
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        env=env(src),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    names: list[str] = []
    top_us = 0
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|", 2)
        name = name[1:]  # "import time: SELF | CUMULATIVE | " + two spaces per level
        names.append(name.strip())
        if not name.startswith(" "):  # a top-level import: its cumulative time counts once
            top_us += int(cumulative)
    return {
        "modules": len(names),
        "import_ms": round(top_us / 1000, 1),
        "heavy": sorted(h for h in HEAVY if h in set(names)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tree", action="append", default=[], metavar="LABEL=SRC")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()
    trees = {"this": ROOT / "src"}
    for spec in args.tree:
        label, _, src = spec.partition("=")
        trees[label] = Path(src).resolve()
    results: dict[str, object] = {"python": sys.version.split()[0], "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="mw-bench-startup.") as tmp:
        cases: dict[str, tuple[list[str], Path]] = {
            "python -c pass": ([sys.executable, "-c", "pass"], ROOT / "src")
        }
        for label, src in trees.items():
            cfg = setup(Path(tmp) / label, src)
            cases[f"{label}: mailwarden --help"] = (mailwarden(cfg, "--help"), src)
            cases[f"{label}: mailwarden domain list"] = (mailwarden(cfg, "domain", "list"), src)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for i in range(args.warmup + args.runs):
            for name, (argv, src) in cases.items():  # interleaved: same load for all
                ms = once(argv, src)
                if i >= args.warmup:
                    times[name].append(ms)
        for name, (argv, src) in cases.items():
            row: dict[str, object] = {
                "min_ms": round(min(times[name]), 1),
                "median_ms": round(statistics.median(times[name]), 1),
            }
            if "mailwarden" in name:
                row.update(imports(argv, src))
            results[name] = row
            print(f"{name:34} {json.dumps(row)}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
