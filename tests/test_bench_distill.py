"""benchmarks/bench_distill.py: mean ± std over seeds, FPPI only where the operating point was reached, verdicts."""

from __future__ import annotations

import json

import pytest
from _bench_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_distill")


def _row(model, map50_95, fppi, reached=True, runtime="onnxruntime", precision="fp32", recipe="float"):
    return {"model": model, "runtime": runtime, "precision": precision, "recipe": recipe, "map50_95": map50_95,
            "fppi_at_op": fppi, "op_reached": reached}  # fmt: skip


def test_seed_statistics_and_verdicts(bench, tmp_path):
    seeds = [
        [_row("student", 0.30, 0.8), _row("distill", 0.34, 0.5), _row("distill_ultralytics", 0.33, 0.4)],
        [_row("student", 0.32, 0.9), _row("distill", 0.36, 0.7), _row("distill_ultralytics", 0.31, 2.0, False)],
    ]
    files = []
    for i, rows in enumerate(seeds):
        files.append(tmp_path / f"s{i}.json")
        files[-1].write_text(json.dumps({"rows": rows + [_row("distill", 0.1, 0.1, recipe="naive")]}))
    table = bench.collect(files)
    assert ("distill", "onnxruntime/fp32/naive") not in table  # only the compared variants
    mean, std, n = bench.stats(table[("distill", "onnxruntime/fp32/float")], "map50_95")
    assert (round(mean, 6), round(std, 6), n) == (0.35, round(0.02 / 2**0.5, 6), 2)
    # the second seed of distill_ultralytics never reached the operating point: its FPPI is not averaged in
    assert bench.stats(table[("distill_ultralytics", "onnxruntime/fp32/float")], "fppi_at_op") == (0.4, 0.0, 1)
    lines = [ln for ln in bench.verdicts(table) if ln.startswith("onnxruntime/fp32/float")]
    assert lines == [
        "onnxruntime/fp32/float map50_95: distill 0.3500 vs student 0.3100: distill better",
        "onnxruntime/fp32/float map50_95: distill 0.3500 vs distill_ultralytics 0.3200: distill better",
        "onnxruntime/fp32/float fppi_at_op: distill 0.6000 vs student 0.8500: distill better",
        "onnxruntime/fp32/float fppi_at_op: distill 0.6000 vs distill_ultralytics 0.4000: distill_ultralytics better",
    ]
    assert all("not measured" in ln for ln in bench.verdicts(table) if ln.startswith("openvino"))
