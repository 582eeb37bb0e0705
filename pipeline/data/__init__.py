"""Datasets: the embedded synthetic road scenes, BDD100K conversion, a user's YOLO dataset, calibration sets.

- :mod:`pipeline.data.synth_writer` (``edgekd data synth``): procedural dash-camera frames, built from
  :mod:`~pipeline.data.synth` (layout, occlusion, labels), ``synth_scene`` (background), ``synth_people`` and
  ``synth_vehicles`` (road users), ``synth_distractors`` (hard negatives), ``synth_conditions`` (time of day,
  weather, noise, blur), ``synth_geometry`` (camera, street) and ``synth_canvas`` (drawing with an id map).
- :mod:`pipeline.data.bdd100k` (``edgekd data bdd100k``): BDD100K -> the same layout.
- :mod:`pipeline.data.yolo`: a user's ultralytics ``data.yaml``, read safely; YOLO -> COCO.
- :mod:`pipeline.data.calib` (``edgekd data calib``): stratified, checksummed calibration manifests.

Nothing is imported here, so ``import pipeline.data.calib`` does not pull in the generator.
"""
