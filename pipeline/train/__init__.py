"""Training: teacher (YOLOv8-L), student (YOLOv8-S), edgekd's distillation and ultralytics' own.

Modules:

- :mod:`pipeline.train.recipe`: the ultralytics trainer arguments every arm shares (no torch import);
- :mod:`pipeline.train.weights`: the trusted-weights registry (``pipeline/train/registry.json``; no torch import);
- :mod:`pipeline.train.kd_loss`: edgekd's distillation loss terms and criterion (torch);
- :mod:`pipeline.train.kd_trainer`: the ``DetectionTrainer`` subclass and the teacher-student wrapper (torch);
- :mod:`pipeline.train.summary`: params, GFLOPs, curves and ``summary.json`` of a trained arm.

The torch modules are imported by the stage functions only (``pipeline/stages/train.py``), never at CLI start-up.
"""

#: Every trained arm's stage name, teacher first: the order of exports, report rows and training tables.
ARMS = ("teacher", "student", "distill", "distill_ultralytics", "distill_cls", "distill_loc", "distill_feat")
