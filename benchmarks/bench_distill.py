"""Does edgekd's distillation beat the direct student and ultralytics' distillation? Seed-to-seed, FP32 and INT8.

Runs ``edgekd run --profile P run.seed=S`` for each seed (or reads runs already there), then prints, per arm and
variant, the mean and standard deviation over seeds of mAP50-95 and of the false positives per image at the
operating point (90 % recall by default; rows that never reach it are counted apart, not averaged in), and
whether ``distill`` beats both ``student`` and ``distill_ultralytics`` on each. Prints numbers; asserts nothing.

    python benchmarks/bench_distill.py --profile smoke --seeds 0 1 2          # CPU, a few minutes per seed
    python benchmarks/bench_distill.py --profile default --seeds 0 1 2 --set train.device=0 --set train.epochs=100
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ARMS = ("teacher", "student", "distill", "distill_ultralytics", "distill_cls", "distill_loc", "distill_feat")
VARIANTS = (("onnxruntime", "fp32", "float"), ("onnxruntime", "int8", "head_float"), ("openvino", "int8", "head_float"))
RIVALS = ("student", "distill_ultralytics")


def run_seed(profile: str, seed: int, runs_dir: Path, sets: list[str]) -> Path:
    """``edgekd run`` for one seed (cached stages make a re-run cheap); returns its metrics.json."""
    name = f"{profile}-seed{seed}"
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--profile", profile, f"run.seed={seed}", f"run.name={name}",
           f"run.runs_dir={runs_dir}", *sets]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return runs_dir / name / "report" / "metrics.json"


def collect(files: list[Path]) -> dict[tuple[str, str], list[dict]]:
    """{(arm, variant): [row of each seed]} from the runs' metrics.json files."""
    out: dict[tuple[str, str], list[dict]] = {}
    for path in files:
        for row in json.loads(path.read_text())["rows"]:
            key = (row["runtime"], row["precision"], row.get("recipe"))
            if row["model"] in ARMS and key in VARIANTS:
                out.setdefault((row["model"], "/".join(key)), []).append(row)
    return out


def stats(rows: list[dict], key: str) -> tuple[float | None, float | None, int]:
    """(mean, std, n) over the rows that have the value (FPPI only where the operating point was reached)."""
    vals = [r[key] for r in rows if r.get(key) is not None and (key != "fppi_at_op" or r.get("op_reached"))]
    if not vals:
        return None, None, 0
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, len(vals)


def fmt(mean: float | None, std: float | None, n: int, scale: float = 1.0) -> str:
    return "—" if mean is None else f"{mean * scale:.3f} ± {(std or 0.0) * scale:.3f} (n={n})"


def verdicts(table: dict[tuple[str, str], list[dict]]) -> list[str]:
    lines = []
    for variant in ("/".join(v) for v in VARIANTS):
        ours = table.get(("distill", variant), [])
        for metric, better in (("map50_95", "higher"), ("fppi_at_op", "lower")):
            m_ours = stats(ours, metric)[0]
            for rival in RIVALS:
                m_rival = stats(table.get((rival, variant), []), metric)[0]
                if m_ours is None or m_rival is None:
                    lines.append(f"{variant} {metric}: distill vs {rival}: not measured (no value on one side: the operating point was never reached, or the row is missing)")
                    continue
                wins = m_ours > m_rival if better == "higher" else m_ours < m_rival
                tie = abs(m_ours - m_rival) < 1e-9
                verdict = "tie" if tie else ("distill better" if wins else f"{rival} better")
                lines.append(f"{variant} {metric}: distill {m_ours:.4f} vs {rival} {m_rival:.4f}: {verdict}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--runs-dir", type=Path, default=Path("/tmp/edgekd-bench-distill"))
    ap.add_argument("--read-only", action="store_true", help="only read the runs already in --runs-dir")
    args = ap.parse_args(argv)
    files = []
    for seed in args.seeds:
        path = args.runs_dir / f"{args.profile}-seed{seed}" / "report" / "metrics.json"
        files.append(path if args.read_only else run_seed(args.profile, seed, args.runs_dir, args.sets))
    table = collect(files)
    print(f"profile {args.profile}, seeds {args.seeds}: mean ± std over seeds")
    print(f"{'arm':<22}{'variant':<32}{'mAP50-95 (points)':<30}{'FPPI @ op (reached)':<30}")
    for arm in ARMS:
        for variant in ("/".join(v) for v in VARIANTS):
            rows = table.get((arm, variant))
            if rows:
                print(f"{arm:<22}{variant:<32}{fmt(*stats(rows, 'map50_95'), scale=100):<30}"
                      f"{fmt(*stats(rows, 'fppi_at_op')):<30}")  # fmt: skip
    for line in verdicts(table):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
