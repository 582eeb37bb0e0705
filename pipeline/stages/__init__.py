"""The pipeline's stages, in run order.

Each stage module exposes ``STAGES: list[Stage]``. Modules import torch and
ultralytics lazily, inside the stage functions, so listing stages is cheap.
"""

from __future__ import annotations

import importlib

from pipeline.runner import Stage

# Stage modules in pipeline order. A module appears here once its stages work.
STAGE_MODULES: tuple[str, ...] = (
    "pipeline.stages.data",
    "pipeline.stages.train",
    "pipeline.stages.export",
    "pipeline.stages.quantize",
    "pipeline.stages.peers",
    "pipeline.stages.evaluate",
    "pipeline.stages.bench",
    "pipeline.stages.report",
)


def all_stages() -> list[Stage]:
    stages: list[Stage] = []
    for module in STAGE_MODULES:
        stages.extend(importlib.import_module(module).STAGES)
    return stages
