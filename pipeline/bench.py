"""Build-side glue of the latency benchmark shared by ``edgekd bench``, the ``bench`` stage and
``benchmarks/bench_latency.py``: the frame to time, the model loaders (PyTorch included), the
bench.json payload and its printed table. The harness itself is :mod:`deploy.benchmark`.

bench.json::

    {"schema": "edgekd.bench/v1", "image": {...}, "threads", "runs", "warmup", "batch",
     "machine": {"cpu", "cores", "load_before", "load_after", "versions": {...}},
     "floor": {"int8": {"gmacs_per_s", ...}, "fp32": {...}} | null,
     "reference": variant id | null, "variants": {id: result}, "notes": [...]}
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from deploy.benchmark import Loader, Variant, benchmark_variants, default_loader, hardware_floor, rates_json
from deploy.errors import InputError
from deploy.provenance import cpu_name

BENCH_SCHEMA = "edgekd.bench/v1"
FRAME_SIZE = (1280, 720)  # width, height: a dash-camera frame, like BDD100K
JPEG_QUALITY = 90
RUNTIME_PACKAGES = ("onnxruntime", "openvino", "torch", "tensorrt", "opencv-python-headless", "numpy")
BACKEND_CHOICES = ("onnxruntime", "openvino", "tensorrt", "torch")


# ---------------------------------------------------------------- the frame
def synthetic_jpeg(seed: int = 0, size: tuple[int, int] = FRAME_SIZE, quality: int = JPEG_QUALITY) -> bytes:
    """A road scene from the synthetic generator (val frame 0 of ``seed``) at ``size`` (w, h), JPEG ``quality``."""
    import cv2

    from pipeline.data.synth import render_frame

    frame = render_frame(seed, "val", 0, size[0], size[1])
    ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 BGR image
        raise InputError("could not JPEG-encode the synthetic benchmark frame")
    return buf.tobytes()


def load_image(path: Path | None, seed: int = 0) -> tuple[bytes, dict[str, Any]]:
    """The encoded frame to time and a description of it: ``path``, or a synthetic 1280x720 JPEG (q90)."""
    from deploy.preprocess import decode_jpeg

    if path is None:
        data = synthetic_jpeg(seed)
        info: dict[str, Any] = {"source": "synthetic", "seed": seed, "quality": JPEG_QUALITY}
        img = decode_jpeg(data)
    else:
        img = decode_jpeg(Path(path))  # InputError naming the file when missing or not an image
        data = Path(path).read_bytes()
        info = {"source": Path(path).name}
    info.update({"width": int(img.shape[1]), "height": int(img.shape[0]), "bytes": len(data)})
    info["sha256"] = hashlib.sha256(data).hexdigest()
    return data, info


# ---------------------------------------------------------------- loading
def make_loader(*, trust_weights: bool = False, imgsz: int | None = None) -> Loader:
    """(variant, threads) -> detector: PyTorch for backend ``torch``, else :class:`deploy.detector.Detector`.

    ``imgsz`` sets PyTorch's input size; a runtime model is fixed at its export size, so a different
    ``imgsz`` there is an InputError (re-export at that size instead).
    """

    def load(v: Variant, threads: int) -> Any:
        if v.backend == "torch":
            from pipeline.torch_backend import TorchDetector

            size = (imgsz, imgsz) if imgsz else None
            return TorchDetector(v.path, trust=trust_weights, imgsz=size, threads=threads, **dict(v.options or {}))
        det = default_loader(v, threads)
        if imgsz and tuple(det.imgsz) != (imgsz, imgsz):
            raise InputError(
                f"model {str(v.path)!r} takes {det.imgsz[0]}x{det.imgsz[1]} inputs, not --imgsz {imgsz}; "
                f"export it at {imgsz} (or drop --imgsz: it sets the size of --backend torch only)"
            )
        return det

    return load


def check_backend_file(path: Path, backend: str | None) -> None:
    """InputError early for a missing file or a backend that cannot load its extension."""
    if backend == "torch":
        from pipeline.torch_backend import EXTENSIONS

        if Path(path).suffix.lower() not in EXTENSIONS:
            raise InputError(f"model {str(path)!r}: backend 'torch' loads {'/'.join(EXTENSIONS)} weights")
    else:
        from deploy.backends import backend_for

        backend_for(Path(path), backend)
    if not Path(path).is_file():
        raise InputError(f"model {str(path)!r} does not exist (or is not a file)")


def file_precision(path: Path) -> str | None:
    """What an ONNX file holds: "int8" when it has quantized compute layers, else its float type (None: not ONNX)."""
    if Path(path).suffix.lower() != ".onnx":
        return None
    import onnx

    from deploy.backends.onnxruntime import graph_precision_counts

    try:
        counts, float_precision = graph_precision_counts(onnx.load(str(path), load_external_data=False))
    except Exception as exc:  # onnx raises DecodeError / ValueError variants
        raise InputError(f"model {str(path)!r} is not a readable ONNX file: {exc}") from None
    return "int8" if counts.get("int8") else float_precision


# ---------------------------------------------------------------- the run
def machine_info() -> dict[str, Any]:
    from importlib import metadata

    from deploy.benchmark import default_threads
    from deploy.latency import load_average

    versions: dict[str, str | None] = {}
    for name in RUNTIME_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu": cpu_name(), "cores": default_threads(), "load_before": load_average(), "versions": versions}


def run_benchmark(
    variants: list[Variant],
    jpeg: bytes,
    image_info: Mapping[str, Any],
    *,
    threads: int,
    runs: int,
    warmup: int,
    batch: int,
    floor: bool = True,
    floor_seconds: float = 2.0,
    reference: str | None = None,
    notes: Iterable[str] = (),
    load: Loader | None = None,
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Measure the hardware floor once, time ``variants`` interleaved, and return the bench.json payload."""
    from deploy.latency import load_average

    machine = machine_info()
    rates = hardware_floor(threads, seconds=floor_seconds) if floor else None
    results = benchmark_variants(
        variants, jpeg, threads=threads, runs=runs, warmup=warmup, batch=batch, rates=rates, load=load, on_step=on_step
    )
    machine["load_after"] = load_average()
    all_notes = list(notes) + precision_notes(results)
    return {
        "schema": BENCH_SCHEMA,
        "image": dict(image_info),
        "threads": threads,
        "runs": runs,
        "warmup": warmup,
        "batch": batch,
        "machine": machine,
        "floor": rates_json(rates),
        "reference": reference if reference in results else None,
        "variants": results,
        "notes": all_notes,
    }


def precision_notes(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A note for every variant that executed in another precision than its file's (e.g. FP32 run as bf16)."""
    notes = []
    for vid, r in results.items():
        meant, ran = r.get("precision"), r.get("executed_precision")
        if meant and ran and ran != meant and not (meant == "int8" and ran == "mixed"):
            notes.append(f"{vid}: the file is {meant} but the runtime executed {ran}; its row is labelled {ran}")
    return notes


# ---------------------------------------------------------------- printing
def table(payload: Mapping[str, Any]) -> Any:
    """A rich Table: one row per variant, p50 per step (ms), p90/p99 end to end, floor ratio, throughput."""
    from rich.table import Table

    t = Table(title=f"latency, {payload['runs']} runs, {payload['threads']} thread(s), image {_image_label(payload)}")
    for col in ("variant", "executed", "pre", "infer", "post", "e2e p50", "e2e p90", "e2e p99", "pre+post",
                "floor", "x floor", "fps b1", f"fps b{payload['batch']}"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("variant", "executed") else "right")
    for vid, r in payload["variants"].items():
        floor, thr = r.get("floor") or {}, r.get("throughput") or {}
        batch_fps = _num(thr.get("batch_fps"), 1) + (" seq" if thr.get("batch_mode") == "sequential" else "")
        t.add_row(
            vid, str(r.get("executed_precision")), _num(r["preprocess"]["p50_ms"]), _num(r["inference"]["p50_ms"]),
            _num(r["postprocess"]["p50_ms"]), _num(r["end_to_end"]["p50_ms"]), _num(r["end_to_end"]["p90_ms"]),
            _num(r["end_to_end"]["p99_ms"]), _pct(r.get("pre_post_share")), _num(floor.get("floor_ms")),
            _num(floor.get("ratio_to_floor"), 2), _num(thr.get("batch1_fps"), 1), batch_fps,
        )  # fmt: skip
    return t


def _image_label(payload: Mapping[str, Any]) -> str:
    img = payload.get("image", {})
    return f"{img.get('source')} {img.get('width')}x{img.get('height')}"


def _num(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


def floor_lines(payload: Mapping[str, Any]) -> list[str]:
    floor = payload.get("floor") or {}
    return [
        f"hardware floor {k}: {v['gmacs_per_s']:.1f} GMAC/s ({v['op']}, {v['threads']} thread(s))"
        for k, v in floor.items()
    ]
