"""Stage ``peers``: ultralytics' own FP32/INT8 exports of the same weights (see :mod:`pipeline.peers`)."""

from __future__ import annotations

import json

from pipeline.config import Config
from pipeline.runner import Stage, StageContext
from pipeline.stages.data import CALIBRATION
from pipeline.train import ARMS
from pipeline.train.weights import STAGE_WEIGHTS


def _peers(ctx: StageContext) -> None:
    from pipeline.data.calib import load_manifest
    from pipeline.peers import export_peers, write_calibration_yaml
    from pipeline.train.weights import verify_stage_weights

    cfg = ctx.cfg
    data = yaml_names(ctx.upstream("data") / "data.yaml")
    images = load_manifest(ctx.upstream("calib") / CALIBRATION)
    data_yaml = write_calibration_yaml(images, data, ctx.out)
    rows = []
    for model in cfg.benchmark.peer_models:
        if model not in ctx.inputs:
            ctx.log(f"[peers] {model}: its training stage is disabled in this config; no ultralytics export of it")
            continue
        weights, _ = verify_stage_weights(ctx.run_dir, model, STAGE_WEIGHTS)
        for art in export_peers(model, weights, data_yaml, ctx.out, imgsz=cfg.train.imgsz):
            rows.append(
                {
                    "model": art.model,
                    "variant": art.variant,
                    "runtime": art.runtime,
                    "precision": art.precision,
                    "path": art.path.as_posix(),
                }
            )
    (ctx.out / "peers.json").write_text(json.dumps({"artifacts": rows}, indent=2, sort_keys=True))


def yaml_names(data_yaml) -> dict[int, str]:
    import yaml

    names = yaml.safe_load(data_yaml.read_text())["names"]
    return {int(k): v for k, v in (names.items() if isinstance(names, dict) else enumerate(names))}


def _enabled(cfg: Config) -> bool:
    return cfg.benchmark.peers and bool(cfg.benchmark.peer_models)


STAGES = [
    Stage(
        "peers",
        _peers,
        version="2",
        params=("benchmark.peers", "benchmark.peer_models", "train.imgsz"),
        upstream=("data", "calib", *ARMS),
        tools=("ultralytics", "torch", "onnx", "onnxruntime", "openvino", "nncf"),
        enabled=_enabled,
        description="ultralytics' own ONNX/OpenVINO FP32 and INT8 exports of the same weights",
    )
]
