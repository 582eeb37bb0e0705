"""``edgekd run``: the stage runner with console output."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

from pipeline.config import Config
from pipeline.runner import Runner
from pipeline.stages import all_stages


def _tracker(console: Console) -> Callable[..., Iterable[Any]]:
    """Rich progress bars for long loops inside stages (a bar per loop, transient in a terminal)."""
    from rich.progress import track

    def tracked(items: Iterable[Any], description: str = "", total: float | None = None) -> Iterable[Any]:
        return track(items, description=description, total=total, console=console, transient=console.is_terminal)

    return tracked


def _refuse_unverifiable_teacher(cfg: Config) -> None:
    """Before any stage runs: a teacher named by a registry entry without a published sha256 can never pass the
    trusted-weights check, so say so now rather than after the data stages (paths are checked by the teacher stage)."""
    from pipeline.train.weights import DEFAULT_REGISTRY, load_registry

    spec = cfg.teacher.weights
    if cfg.teacher.trust_weights or not spec.endswith(".pt") or "/" in spec:
        return
    entry = load_registry(DEFAULT_REGISTRY).get(spec)
    if entry is not None and entry.sha256 is None:
        from deploy.errors import UntrustedWeightsError

        raise UntrustedWeightsError(
            f"teacher.weights: {spec!r} has no published sha256 in {DEFAULT_REGISTRY}, so edgekd cannot verify the "
            "download and will not unpickle it (a .pt can run code). If you trust ultralytics' release asset, set "
            f"teacher.trust_weights=true (e.g. `edgekd run --profile {cfg.profile} teacher.trust_weights=true`); or "
            f"add its sha256 to the registry; or train the teacher from scratch with teacher.weights="
            f"{entry.architecture}"
        )


def run_pipeline(cfg: Config, force: Sequence[str] = (), until: str | None = None) -> int:
    _refuse_unverifiable_teacher(cfg)
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[bold]edgekd run[/] profile={cfg.profile} run_dir={cfg.run_dir}")
    runner = Runner(cfg, all_stages(), log=lambda msg: console.print(escape(msg)), track=_tracker(console))
    if until is not None and until not in runner.by_name:
        from deploy.errors import StageError

        raise StageError(f"--until {until!r}: no such stage; expected one of {', '.join(runner.by_name)}")
    results = runner.run(force=force, until=until)
    ran = sum(r.status == "ran" for r in results)
    cached = sum(r.status == "cached" for r in results)
    console.print(f"[bold green]done[/]: {ran} stage(s) ran, {cached} cached; manifest: {cfg.run_dir / 'manifest.json'}")
    report = cfg.run_dir / "report" / "report.html"
    if report.is_file():
        console.print(f"report: {report}")
    return 0
