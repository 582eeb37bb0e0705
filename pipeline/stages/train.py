"""Training stages: ``teacher`` (YOLOv8-L), ``student`` (YOLOv8-S baseline), ``distill`` (edgekd's KD),
``distill_ultralytics`` (ultralytics' own ``distill_model``) and, with ``distillation.ablation=true``, one arm per
KD term (``distill_cls``, ``distill_loc``, ``distill_feat``).

All arms train with ultralytics' trainer on the ``data`` stage's dataset with the same recipe and budget
(``train`` section, seeded with ``run.seed``, deterministic). Each writes, relative to its stage folder:

- ``weights/best.pt``: a plain ultralytics ``DetectionModel`` checkpoint (no teacher, no projector);
- ``curves.csv``: per epoch, every loss term (train/* and val/*), precision, recall, mAP50, mAP50-95, lr;
- ``summary.json``: ``model``, ``params``, ``gflops_640``, ``gflops_imgsz``, ``final`` (precision, recall, map50,
  map50_95 of ultralytics' validator on ``weights/best.pt``; ``val_args`` reproduce them with ``yolo val``),
  ``train_seconds``, ``epochs``, provenance (``init``, ``teacher``, ``distillation``, ``weights`` sha256).

Pickled weights are checked before they are loaded: the configured teacher ``.pt`` against
``pipeline/train/registry.json`` (or the user's opt-in), the teacher the distillation arms use against the sha256 the run
manifest recorded for the ``teacher`` stage. torch and ultralytics are imported inside the stage functions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from deploy.errors import StageError
from pipeline.config import Config
from pipeline.runner import Stage, StageContext, sha256_file
from pipeline.train.recipe import (
    RUN_NAME,
    WORK_DIR,
    Recipe,
    no_unverified_amp_weights,
    recipe_from_config,
    record_checkpoints,
    resume_checkpoint,
    short_budget_warning,
    trainer_overrides,
    val_args,
    verified_checkpoint,
    weights_dir,
)
from pipeline.train.weights import STAGE_WEIGHTS, ResolvedWeights, is_pickle, resolve_weights, verify_stage_weights

TOOLS = ("torch", "torchvision", "ultralytics")
RECIPE_KEYS = ("run.seed", "train")
KD_KEYS = tuple(
    f"distillation.{k}"
    for k in (
        "task_weight",
        "cls_weight",
        "cls_temperature",
        "loc_weight",
        "loc_temperature",
        "feat_weight",
        "feat_loss",
        "feat_temperature",
        "conf_threshold",
        "guard",
        "guard_iou",
    )
)
#: Ablation arms: stage name -> the one KD term it keeps.
ABLATION_ARMS: dict[str, str] = {"distill_cls": "cls", "distill_loc": "loc", "distill_feat": "feat"}


# ---------------------------------------------------------------- helpers
def _data_yaml(ctx: StageContext) -> Path:
    path = ctx.upstream("data") / "data.yaml"
    if not path.is_file():
        raise StageError(f"stage {ctx.name!r}: {path} is missing; the 'data' stage must write data.yaml")
    return path


def _train_images(ctx: StageContext) -> int | None:
    """Images in the training split (the data stage's COCO annotations); None when it wrote none."""
    from deploy.textio import read_json

    path = ctx.upstream("data") / "annotations" / "train_coco.json"
    if not path.is_file():
        return None
    gt = read_json(path, "training annotations", "rerun the data stage with --force", StageError)
    return len(gt.get("images", [])) if isinstance(gt, dict) else None


def _resolve_student(cfg: Config) -> ResolvedWeights:
    return resolve_weights(
        cfg.student.model, trust=cfg.teacher.trust_weights, key="student.model", trust_key="teacher.trust_weights"
    )


def _model_name(spec: str) -> str:
    return Path(spec).stem


def _local_pickles(*specs: str) -> list[Path]:
    """Local ``.pt`` files among the specs: their content goes into the stage's cache key."""
    return [Path(s) for s in specs if is_pickle(s) and Path(s).is_file()]


def _train_and_collect(
    ctx: StageContext,
    *,
    make_trainer: Callable[[Path], Any],
    recipe: Recipe,
    model_spec: str,
    provenance: dict[str, Any],
) -> None:
    """Run ``make_trainer(work_dir).train()`` and leave weights/best.pt, curves.csv, summary.json in ctx.out."""
    from pipeline.train.summary import (
        final_metrics,
        finalize_checkpoint,
        model_stats,
        read_results,
        write_curves,
        write_summary,
    )

    work = (ctx.scratch or ctx.out) / WORK_DIR  # the scratch folder survives a crash: the next run resumes there
    ctx.log(
        f"[{ctx.name}] training {_model_name(model_spec)} ({model_spec}): {recipe.epochs} epoch(s) at imgsz "
        f"{recipe.imgsz}, batch {recipe.batch}, device {recipe.device}"
    )
    resumed = _prepare_work(ctx, work, recipe)
    started = time.perf_counter()
    best, csv, trainer = _run_trainer(ctx, work, recipe, make_trainer)
    seconds = time.perf_counter() - started
    if not best.is_file():
        raise StageError(f"stage {ctx.name!r}: ultralytics wrote no {best.name}; see the training log above")
    dst = ctx.out / STAGE_WEIGHTS
    model = finalize_checkpoint(best, dst)
    rows = read_results(csv)
    write_curves(rows, ctx.out / "curves.csv")
    metrics = final_metrics(getattr(trainer, "metrics", None)) or _validate(dst, recipe, work)
    names = {str(k): v for k, v in dict(model.names).items()}
    payload = {
        "stage": ctx.name,
        "model": _model_name(model_spec),
        "model_spec": model_spec,
        "nc": len(names),
        "names": names,
        **model_stats(model, recipe.imgsz),
        "recipe": {k: v for k, v in recipe.as_dict().items() if k != "data"},
        "data_stage": "data",
        "train_seconds": round(seconds, 2),  # of this run only, when it resumed an interrupted one
        "resumed": resumed,
        "epochs": recipe.epochs,
        "epochs_completed": len(rows),
        "final": metrics,
        "val_args": val_args(recipe),
        "loss_terms": [k.split("/", 1)[1] for k in (rows[0] if rows else {}) if k.startswith("train/")],
        "weights": {"path": STAGE_WEIGHTS, "sha256": sha256_file(dst)},
        **provenance,
    }
    write_summary(ctx.out / "summary.json", payload)
    shutil.rmtree(work, ignore_errors=True)
    ctx.log(
        f"[{ctx.name}] {payload['model']}: {payload['params'] / 1e6:.2f}M params, mAP50 {metrics.get('map50', 0):.4f}, "
        f"mAP50-95 {metrics.get('map50_95', 0):.4f}, {seconds:.1f} s"
    )


def _prepare_work(ctx: StageContext, work: Path, recipe: Recipe) -> bool:
    """Warn on a short budget; keep ``work`` to resume from a recorded checkpoint (True), else clear unknown ones."""
    n_train = _train_images(ctx)
    warning = short_budget_warning(recipe, n_train) if n_train else None
    if warning:
        ctx.log(f"[{ctx.name}] warning: {warning}")
    last = resume_checkpoint(work)
    if last is not None:
        ctx.log(f"[{ctx.name}] resuming the interrupted training from {last} (weights, optimizer, EMA, epoch)")
        return True
    if any(weights_dir(work).glob("*.pt")):
        ctx.log(f"[{ctx.name}] warning: {weights_dir(work)} holds checkpoints whose sha256 is not on record "
                "(written by something else, or cut short); they are not loaded, training starts over")  # fmt: skip
        shutil.rmtree(work)
    return False


def _run_trainer(
    ctx: StageContext, work: Path, recipe: Recipe, make_trainer: Callable[[Path], Any]
) -> tuple[Path, Path, Any]:
    """(best.pt, results.csv, the trainer or None): train, unless an interrupted run in ``work`` already finished."""
    from pipeline.train.summary import read_results

    best, csv = weights_dir(work) / "best.pt", work / RUN_NAME / "results.csv"
    if verified_checkpoint(best) and csv.is_file() and len(read_results(csv)) >= recipe.epochs:
        ctx.log(f"[{ctx.name}] the interrupted run had finished training; collecting its results")
        return best, csv, None
    try:
        trainer = make_trainer(work)
        trainer.add_callback("on_pretrain_routine_start", no_unverified_amp_weights)
        trainer.add_callback("on_model_save", lambda t: record_checkpoints(Path(t.wdir)))
        # the final evaluation rewrites last.pt / best.pt without the optimizer: record those bytes too
        trainer.add_callback("on_train_end", lambda t: record_checkpoints(Path(t.wdir)))
        trainer.train()
    except (RuntimeError, ValueError, FileNotFoundError, TypeError, AssertionError, subprocess.CalledProcessError) as exc:
        raise StageError(f"stage {ctx.name!r}: ultralytics training failed: {exc}") from exc
    return Path(trainer.best), Path(trainer.csv), trainer


def _validate(weights: Path, recipe: Recipe, work: Path) -> dict[str, float]:
    """Final metrics by ultralytics' validator, for trainers that ran in DDP subprocesses (no metrics in-process).

    ultralytics writes its val folder under ``work`` (removed with it), not under the user's ``runs/detect``."""
    from ultralytics import YOLO

    from pipeline.train.summary import final_metrics

    device = recipe.device.split(",")[0]
    extra = {k: v for k, v in val_args(recipe).items() if k != "split"}
    metrics = YOLO(str(weights)).val(
        data=str(recipe.data), device=device, plots=False, verbose=False, project=os.path.abspath(work), name="val",
        exist_ok=True, **extra,
    )  # fmt: skip
    return final_metrics(metrics.results_dict)


def _teacher_from_run(ctx: StageContext) -> tuple[Path, dict[str, Any]]:
    path, digest = verify_stage_weights(ctx.run_dir, "teacher", STAGE_WEIGHTS)
    return path, {"teacher": {"stage": "teacher", "weights": f"teacher/{STAGE_WEIGHTS}", "sha256": digest}}


# ---------------------------------------------------------------- stage functions
def run_teacher(ctx: StageContext) -> None:
    """YOLOv8-L from ``teacher.weights`` (a .yaml from scratch, or a verified .pt), trained on the dataset."""
    cfg = ctx.cfg
    resolved = resolve_weights(cfg.teacher.weights, trust=cfg.teacher.trust_weights)
    recipe = recipe_from_config(cfg, _data_yaml(ctx), epochs=cfg.teacher.epochs)

    def make(work: Path) -> Any:
        from ultralytics.models.yolo.detect import DetectionTrainer

        return DetectionTrainer(overrides=trainer_overrides(recipe, resolved.model_arg, work))

    init = {"spec": resolved.spec, "sha256": resolved.sha256, "trusted_by": resolved.trusted_by}
    _train_and_collect(ctx, make_trainer=make, recipe=recipe, model_spec=cfg.teacher.weights, provenance={"init": init})


def run_student(ctx: StageContext) -> None:
    """The baseline: YOLOv8-S with the same data, recipe and budget, no teacher."""
    cfg = ctx.cfg
    resolved = _resolve_student(cfg)
    recipe = recipe_from_config(cfg, _data_yaml(ctx))

    def make(work: Path) -> Any:
        from ultralytics.models.yolo.detect import DetectionTrainer

        return DetectionTrainer(overrides=trainer_overrides(recipe, resolved.model_arg, work))

    _train_and_collect(
        ctx, make_trainer=make, recipe=recipe, model_spec=cfg.student.model, provenance={"teacher": None}
    )


def _kd_stage(term: str | None) -> Callable[[StageContext], None]:
    """A stage function training YOLOv8-S with edgekd's KD: every term (``term=None``) or only ``term``."""

    def run(ctx: StageContext) -> None:
        from pipeline.train.kd_loss import LOSS_NAMES, KDSettings
        from pipeline.train.kd_trainer import build_kd_trainer

        cfg = ctx.cfg
        student = _resolve_student(cfg)
        teacher_path, provenance = _teacher_from_run(ctx)
        settings = KDSettings.from_config(cfg.distillation)
        if term is not None:
            settings = settings.only(term)
            if getattr(settings, f"{term}_weight") == 0:
                ctx.log(f"[{ctx.name}] distillation.{term}_weight is 0: this arm trains without any KD term")
        recipe = recipe_from_config(cfg, _data_yaml(ctx))

        def make(work: Path) -> Any:
            overrides = trainer_overrides(recipe, student.model_arg, work)
            return build_kd_trainer(overrides, student.model_arg, teacher_path, settings)

        provenance["distillation"] = {"method": "edgekd", "terms": list(LOSS_NAMES), **asdict(settings)}
        _train_and_collect(ctx, make_trainer=make, recipe=recipe, model_spec=cfg.student.model, provenance=provenance)

    run.__name__ = f"run_distill_{term or 'all'}"
    return run


def run_distill_ultralytics(ctx: StageContext) -> None:
    """YOLOv8-S with ultralytics' own ``distill_model`` (score-weighted neck-feature L2), same teacher and budget."""
    cfg = ctx.cfg
    student = _resolve_student(cfg)
    teacher_path, provenance = _teacher_from_run(ctx)
    recipe = recipe_from_config(cfg, _data_yaml(ctx))
    weight = cfg.distillation.ultralytics_weight

    def make(work: Path) -> Any:
        from ultralytics.models.yolo.detect import DetectionTrainer

        extra = {"distill_model": str(teacher_path), "dis": weight}
        return DetectionTrainer(overrides=trainer_overrides(recipe, student.model_arg, work, **extra))

    provenance["distillation"] = {"method": "ultralytics distill_model", "dis": weight}
    _train_and_collect(ctx, make_trainer=make, recipe=recipe, model_spec=cfg.student.model, provenance=provenance)


# ---------------------------------------------------------------- registration
STUDENT_KEYS = RECIPE_KEYS + ("student.model",)

STAGES: list[Stage] = [
    Stage(
        "teacher",
        run_teacher,
        params=RECIPE_KEYS + ("teacher.weights", "teacher.epochs"),
        upstream=("data",),
        tools=TOOLS,
        external=lambda cfg: _local_pickles(cfg.teacher.weights),
        description="train the YOLOv8-L teacher",
    ),
    Stage(
        "student",
        run_student,
        params=STUDENT_KEYS,
        upstream=("data",),
        tools=TOOLS,
        external=lambda cfg: _local_pickles(cfg.student.model),
        description="train the YOLOv8-S baseline (no teacher)",
    ),
    Stage(
        "distill",
        _kd_stage(None),
        params=STUDENT_KEYS + KD_KEYS,
        upstream=("data", "teacher"),
        tools=TOOLS,
        external=lambda cfg: _local_pickles(cfg.student.model),
        description="YOLOv8-S with edgekd's distillation (decision + localization + feature + guard)",
    ),
    Stage(
        "distill_ultralytics",
        run_distill_ultralytics,
        params=STUDENT_KEYS + ("distillation.ultralytics_weight",),
        upstream=("data", "teacher"),
        tools=TOOLS,
        external=lambda cfg: _local_pickles(cfg.student.model),
        enabled=lambda cfg: cfg.distillation.ultralytics_arm,
        description="YOLOv8-S with ultralytics' own distill_model",
    ),
    *(
        Stage(
            name,
            _kd_stage(term),
            params=STUDENT_KEYS + KD_KEYS,
            upstream=("data", "teacher"),
            tools=TOOLS,
            external=lambda cfg: _local_pickles(cfg.student.model),
            enabled=lambda cfg: cfg.distillation.ablation,
            description=f"ablation: edgekd's distillation with the {term} term only",
        )
        for name, term in ABLATION_ARMS.items()
    ),
]
