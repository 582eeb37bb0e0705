"""Detection metrics: COCO mAP (faster-coco-eval), Caltech miss rate vs FPPI and LAMR, the operating point, false
alarms per hour, D-ECE calibration, and breakdowns by object height, image condition and distractor kind.

numpy + faster-coco-eval only (no torch): it runs on the device side.

- :func:`deploy.metrics.evaluate.evaluate`: COCO GT dict + COCO results + options -> the metrics dict.
- :func:`deploy.metrics.evaluate.predict_coco`: run a :class:`deploy.detector.Detector` over a COCO dataset.
- :func:`deploy.metrics.coco.coco_map`: mAP50 / mAP50-95 only (overall and per category id).
"""

from deploy.metrics.coco import coco_map
from deploy.metrics.evaluate import ROW_KEYS, EvalOptions, evaluate_files, predict_coco

# The function ``evaluate`` is deliberately not re-exported here: it would shadow the submodule
# ``deploy.metrics.evaluate`` (``import deploy.metrics.evaluate as m`` would then give the function).
__all__ = ["ROW_KEYS", "EvalOptions", "coco_map", "evaluate_files", "predict_coco"]
