"""Stages ``data`` (build or adopt the dataset) and ``calib`` (pick the INT8 calibration set).

``data`` writes the edgekd dataset layout into its stage folder:

- ``source: synth``: procedurally generated road scenes (``data.synth`` sizes, ``run.seed``);
- ``source: yolo``: a ``data.yaml`` pointing at the user's absolute image folders plus
  ``annotations/{train,val}_coco.json`` (the user's own, with absolute ``file_name``, or converted from the YOLO
  labels); the images stay where they are;
- ``source: bdd100k``: :func:`pipeline.data.bdd100k.convert_bdd100k` (labels + links to the images).

``calib`` writes ``calibration.json`` (``data.calib.n`` images, seed ``run.seed``) whose paths are relative to
the data stage folder, with ``root`` the final (absolute) data stage folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from deploy.errors import StageError
from pipeline.config import Config, DataSource
from pipeline.runner import Stage, StageContext

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.data.yolo import YoloDataset

CALIBRATION = "calibration.json"


def _data(ctx: StageContext) -> None:
    cfg = ctx.cfg.data
    if cfg.source is DataSource.SYNTH:
        from pipeline.data.synth_writer import generate_dataset

        s = cfg.synth
        ctx.log(f"[data] generating {s.train} + {s.val} synthetic frames at {s.width}x{s.height}, reach {s.reach}")
        generate_dataset(
            ctx.out, train=s.train, val=s.val, seed=ctx.cfg.run.seed, width=s.width, height=s.height, reach=s.reach
        )
    elif cfg.source is DataSource.YOLO:
        if cfg.yaml is None:  # the config validator already requires it
            raise StageError("data.yaml is null; set it to your ultralytics data.yaml when data.source is 'yolo'")
        adopt_yolo(cfg.yaml, ctx.out)
    else:
        try:
            from pipeline.data.bdd100k import convert_bdd100k
        except ImportError as exc:  # pragma: no cover - shipped in the same package
            raise StageError(
                f"data.source 'bdd100k' needs pipeline.data.bdd100k, which cannot be imported: {exc}"
            ) from exc
        b = cfg.bdd100k
        if b.images is None or b.labels is None:
            raise StageError("data.bdd100k.images and data.bdd100k.labels must be set when data.source is 'bdd100k'")
        convert_bdd100k(
            b.images, b.labels, ctx.out, classes=b.classes, val_fraction=b.val_fraction, seed=ctx.cfg.run.seed,
            strict=False, log=ctx.log,
        )  # fmt: skip


def adopt_yolo(data_yaml: Path, out: Path) -> None:
    """Write ``out/data.yaml`` (absolute image sources) and ``out/annotations/{split}_coco.json``."""
    from pipeline.data.yolo import absolute, load_coco, read_data_yaml, yolo_to_coco

    ds = read_data_yaml(data_yaml)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        given = ds.coco_json(split)
        if given.is_file():  # the user's COCO GT: make file names absolute so it works from here
            coco = load_coco(given)
            for img in coco["images"]:
                img["file_name"] = absolute(ds.root / img["file_name"]).as_posix()
        else:
            coco = yolo_to_coco(ds.images(split), ds.names, root=None)
        (out / "annotations" / f"{split}_coco.json").write_text(json.dumps(coco, sort_keys=True) + "\n")
        extra = ds.root / "annotations" / f"{split}_distractors.json"
        if extra.is_file():
            (out / "annotations" / extra.name).write_bytes(extra.read_bytes())
    _write_fingerprint(ds, out / "source.json")
    spec = {
        "train": [s.as_posix() for s in ds.sources["train"]],
        "val": [s.as_posix() for s in ds.sources["val"]],
        "nc": len(ds.names),
        "names": dict(enumerate(ds.names)),
    }
    (out / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def _write_fingerprint(ds: YoloDataset, path: Path) -> None:
    """Digests of the user's image and label folders: downstream stages (training reads the user's labels
    directly) see their outputs' upstream digest change whenever the user's files change."""
    from pipeline.data.yolo import label_path
    from pipeline.runner import hash_tree, sha256_file, tree_digest

    def digest(p: Path) -> str | None:
        if p.is_dir():
            return tree_digest(hash_tree(p, ("*.cache",)))
        return sha256_file(p) if p.is_file() else None

    record: dict[str, Any] = {"data_yaml": sha256_file(ds.yaml_path), "sources": {}}
    for split in ("train", "val"):
        entries = []
        for src in ds.sources[split]:
            labels = label_path(src / "x.jpg").parent if src.is_dir() else None
            entries.append({"path": src.as_posix(), "sha256": digest(src),
                            "labels": labels.as_posix() if labels else None,
                            "labels_sha256": digest(labels) if labels else None})  # fmt: skip
        record["sources"][split] = entries
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _calib(ctx: StageContext) -> None:
    from pipeline.data.calib import build_manifest, write_manifest
    from pipeline.data.yolo import absolute

    data_dir = absolute(ctx.upstream("data"))  # final: the runner renamed it into place before this stage
    final_dir = absolute(ctx.run_dir / ctx.name)
    manifest, warnings = build_manifest(
        data_dir / "data.yaml", n=ctx.cfg.data.calib.n, seed=ctx.cfg.run.seed, manifest_dir=final_dir,
        data_label=(data_dir / "data.yaml").as_posix(),
    )  # fmt: skip
    for w in warnings:
        ctx.log(f"[calib] warning: {w}")
    write_manifest(manifest, ctx.out / CALIBRATION)
    ctx.log(
        f"[calib] {manifest['n']} image(s) in {sum(1 for s in manifest['strata'].values() if s['selected'])} strata"
    )


def _external(cfg: Config) -> list[Path]:
    """User files the data stage reads: their changes invalidate the cache."""
    data = cfg.data
    if data.source is DataSource.YOLO and data.yaml is not None:
        paths = [data.yaml]
        try:
            from pipeline.data.yolo import label_path, read_data_yaml

            ds = read_data_yaml(data.yaml)
        except Exception:  # noqa: BLE001 - the stage itself reports a bad yaml with a clear message
            return paths
        for split in ("train", "val"):
            for src in ds.sources[split]:
                paths.append(src)
                labels = label_path(src / "x.jpg").parent if src.is_dir() else None
                if labels is not None and labels.is_dir() and labels != src:
                    paths.append(labels)
            coco = ds.coco_json(split)
            if coco.is_file():
                paths.append(coco)
        return paths
    if data.source is DataSource.BDD100K:
        return [p for p in (data.bdd100k.images, data.bdd100k.labels) if p is not None]
    return []


STAGES: list[Stage] = [
    Stage(
        "data",
        _data,
        version="1",
        params=("data.source", "data.yaml", "data.synth", "data.bdd100k", "run.seed"),
        tools=("numpy", "opencv-python-headless"),
        external=_external,
        description="generate (synth) or adopt (yolo, bdd100k) the dataset: data.yaml, labels, COCO json",
        volatile=("labels/*.cache", "*.cache"),
    ),
    Stage(
        "calib",
        _calib,
        version="1",
        params=("data.calib.n", "run.seed"),
        upstream=("data",),
        tools=("numpy", "opencv-python-headless"),
        description="a stratified, checksummed sample of training images for INT8 calibration",
    ),
]
