"""Benchmark the synthetic dataset generator: 1,000 frames at 640x384, written to disk, on ONE core.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_synth.py [--frames 1000] [--size 640x384]``. Target: <= 20 s
(>= 50 frames/s). Prints wall time, this process's CPU time (less sensitive to a busy machine) and frames/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/OpenCV load: one core, as the target assumes
import cv2  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", default="640x384")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)  # inside the benchmark only: one core
    from pipeline.data.synth_writer import generate_dataset, parse_size

    width, height = parse_size(args.size)
    val = max(1, args.frames // 5)
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        info = generate_dataset(Path(tmp) / "synth", train=args.frames - val, val=val, seed=args.seed,
                                width=width, height=height)  # fmt: skip
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    boxes = sum(sum(s["boxes"].values()) for s in info["splits"].values())
    print(f"synth: {args.frames} frames {width}x{height}, {boxes} labelled boxes, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")  # fmt: skip
    print(f"wall {wall:.2f} s ({args.frames / wall:.1f} frames/s), cpu {cpu:.2f} s ({args.frames / cpu:.1f} frames/s)")
    print(f"target <= 20 s for 1000 frames: {'PASS' if wall * 1000 / args.frames <= 20 else 'MISS'} (wall)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
