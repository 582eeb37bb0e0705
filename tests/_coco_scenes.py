"""Random COCO scenes (ground truth + detections) shared by the metric tests."""

from __future__ import annotations

import random


def random_case(seed: int, n_images: int = 25, n_cats: int = 3) -> tuple[dict, list[dict]]:
    """Crowded scenes with overlapping boxes, ignore regions (iscrowd and `ignore` flags), tied scores."""
    rng = random.Random(seed)
    gt = {
        "images": [{"id": i + 1, "width": 320, "height": 240} for i in range(n_images)],
        "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(n_cats)],
        "annotations": [],
    }
    dets = []
    for img in gt["images"]:
        for _ in range(rng.randint(0, 6)):
            w, h = rng.uniform(8, 60), rng.uniform(16, 120)
            box = [rng.uniform(0, 260), rng.uniform(0, 120), w, h]
            cat = rng.randint(1, n_cats)
            flag = rng.random()
            extra = {"iscrowd": 1} if flag < 0.08 else {"ignore": 1} if flag < 0.15 else {}
            ann = {"id": len(gt["annotations"]) + 1, "image_id": img["id"], "category_id": cat, "bbox": box}
            gt["annotations"].append({**ann, "area": w * h, "iscrowd": 0, **extra})
            for _ in range(rng.choice([0, 1, 1, 1, 2])):  # missed, found, duplicated
                jit = [
                    box[0] + rng.gauss(0, w * 0.15),
                    box[1] + rng.gauss(0, h * 0.15),
                    w * rng.uniform(0.7, 1.3),
                    h * rng.uniform(0.7, 1.3),
                ]
                dets.append({"image_id": img["id"], "category_id": cat, "bbox": jit, "score": round(rng.random(), 2)})
        for _ in range(rng.randint(0, 8)):  # background false alarms
            dets.append({
                "image_id": img["id"], "category_id": rng.randint(1, n_cats),
                "bbox": [rng.uniform(0, 300), rng.uniform(0, 200), rng.uniform(5, 50), rng.uniform(5, 90)],
                "score": round(rng.random() * 0.7, 2),
            })  # fmt: skip
    return gt, dets
