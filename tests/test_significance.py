"""Paired bootstrap of mAP50-95 differences: the weighted COCO accumulation against faster-coco-eval."""

from __future__ import annotations

import random

import numpy as np
import pytest
from _coco_scenes import random_case

from deploy.metrics.coco import coco_map
from pipeline.evaluation import paired_entries, paired_tests
from pipeline.significance import describe, image_matches, paired_bootstrap, weighted_map50_95

pytest.importorskip("pycocotools")


def scene(seed: int, n_images: int = 20, n_cats: int = 3, tie_scores: bool = False) -> tuple[dict, list[dict]]:
    """:func:`random_case` plus a class without boxes and one image flooded with more than COCO's 100 detections
    per class; ``tie_scores=False`` redraws every score continuous (no ties)."""
    gt, dets = random_case(seed, n_images, n_cats)
    rng = random.Random(seed)
    gt["categories"].append({"id": n_cats + 1, "name": "no boxes"})
    dets.append({"image_id": 1, "category_id": n_cats + 1, "bbox": [10, 10, 20, 20], "score": 0.5})
    dets += [{"image_id": 1, "category_id": 1, "bbox": [rng.uniform(0, 300), rng.uniform(0, 200), 9, 9],
              "score": round(rng.random() * 0.5, 2)} for _ in range(130)]  # fmt: skip
    if not tie_scores:
        dets = [{**d, "score": rng.random()} for d in dets]
    return gt, dets


def duplicated(gt: dict, dets: list[dict], counts: np.ndarray) -> tuple[dict, list[dict]]:
    """The split with image k present counts[k] times (fresh ids), the slow obvious form of a weighted split."""
    images, anns, out = [], [], []
    for k, img in enumerate(sorted(gt["images"], key=lambda im: im["id"])):
        for c in range(int(counts[k])):
            new = 1000 * (c + 1) + img["id"]
            images.append({**img, "id": new})
            for a in (a for a in gt["annotations"] if a["image_id"] == img["id"]):
                anns.append({**a, "id": len(anns) + 1, "image_id": new})
            out += [{**d, "image_id": new} for d in dets if d["image_id"] == img["id"]]
    return {**gt, "images": images, "annotations": anns}, out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tie_scores", [False, True])
def test_unit_weights_give_coco_map(seed, tie_scores):
    gt, dets = scene(seed, tie_scores=tie_scores)
    assert weighted_map50_95(image_matches(gt, dets)) == pytest.approx(coco_map(gt, dets)["map50_95"], abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_integer_weights_equal_duplicated_images(seed):
    gt, dets = scene(seed, n_images=12)
    counts = np.random.default_rng(seed).integers(0, 4, len(gt["images"]))
    counts[1] = max(counts[1], 1)
    dup_gt, dup_dets = duplicated(gt, dets, counts)
    want = coco_map(dup_gt, dup_dets)["map50_95"]
    assert weighted_map50_95(image_matches(gt, dets), counts) == pytest.approx(want, abs=1e-9)


def test_no_detections_score_zero_and_no_ground_truth_is_undefined():
    gt, _ = scene(0)
    assert weighted_map50_95(image_matches(gt, [])) == 0.0
    empty = {**gt, "annotations": []}
    assert weighted_map50_95(image_matches(empty, [])) is None


def test_weights_of_the_wrong_length_are_refused():
    gt, dets = scene(0)
    with pytest.raises(ValueError, match=r"expected shape \(20,\)"):
        weighted_map50_95(image_matches(gt, dets), np.ones(3))


def test_a_variant_against_itself_differs_by_nothing():
    gt, dets = scene(1)
    m = image_matches(gt, dets)
    d = paired_bootstrap(m, m, resamples=50, seed=0)
    assert (d.delta, d.low, d.high, d.verdict) == (0.0, 0.0, 0.0, "no detectable difference")
    assert (d.resamples, d.n_images) == (50, 20)


def test_a_clearly_better_variant_is_called_better_and_the_interval_holds_the_difference():
    gt, dets = scene(2, n_images=40)
    worse = [d for i, d in enumerate(dets) if i % 3]  # a third of the detections lost
    a, b = image_matches(gt, dets), image_matches(gt, worse)
    d = paired_bootstrap(a, b, resamples=200, seed=0)
    assert d.delta == pytest.approx(coco_map(gt, dets)["map50_95"] - coco_map(gt, worse)["map50_95"])
    assert 0 < d.low <= d.delta <= d.high
    assert d.verdict == "better"
    text = describe(d.as_dict())
    assert text.startswith(f"{100 * d.delta:+.2f} points, 95% CI [{100 * d.low:+.2f}, ") and text.endswith(": better")
    flipped = paired_bootstrap(b, a, resamples=200, seed=0)
    assert flipped.verdict == "worse"
    assert (flipped.low, flipped.high) == pytest.approx((-d.high, -d.low))


def test_the_same_seed_gives_the_same_interval():
    gt, dets = scene(3)
    a, b = image_matches(gt, dets), image_matches(gt, dets[::2])
    assert paired_bootstrap(a, b, resamples=40, seed=7) == paired_bootstrap(a, b, resamples=40, seed=7)


def test_variants_on_different_images_or_a_bad_confidence_are_refused():
    gt, dets = scene(0)
    fewer = {**gt, "images": gt["images"][1:]}
    a, b = image_matches(gt, dets), image_matches(fewer, [d for d in dets if d["image_id"] != gt["images"][0]["id"]])
    with pytest.raises(ValueError, match="different images"):
        paired_bootstrap(a, b)
    with pytest.raises(ValueError, match=r"confidence: expected a value in \(0, 1\), got 1.5"):
        paired_bootstrap(a, a, confidence=1.5)


def test_paired_tests_pick_the_pairs_the_report_tests():
    ids = [
        "student/onnxruntime/fp32/float", "student/onnxruntime/int8/head_float", "distill/onnxruntime/fp32/float",
        "distill/onnxruntime/int8/head_float", "distill/openvino/int8/head_float", "distill/openvino/int8/ultralytics",
        "distill/onnxruntime/int8/ultralytics", "distill/onnxruntime/int8/naive", "teacher/openvino/int8/head_float",
    ]  # fmt: skip
    got = paired_tests(ids)
    assert ("edgekd_vs_ultralytics", "distill/openvino/int8/head_float", "distill/openvino/int8/ultralytics") in got
    assert (
        "edgekd_vs_ultralytics",
        "distill/onnxruntime/int8/head_float",
        "distill/onnxruntime/int8/ultralytics",
    ) in got
    assert ("int8_vs_fp32", "student/onnxruntime/int8/head_float", "student/onnxruntime/fp32/float") in got
    assert ("int8_vs_fp32", "distill/openvino/int8/head_float", "distill/onnxruntime/fp32/float") in got
    assert ("distillation", "distill/onnxruntime/fp32/float", "student/onnxruntime/fp32/float") in got
    assert ("distillation", "distill/onnxruntime/int8/head_float", "student/onnxruntime/int8/head_float") in got
    assert not any("naive" in a or "naive" in b for _, a, b in got)
    assert not any(a.startswith("teacher") for _, a, _ in got)  # its FP32 is not among the variants
    assert len(got) == 7


def test_paired_entries_reuse_one_matching_per_variant():
    gt, dets = scene(4)
    detections = {"student/onnxruntime/fp32/float": dets[::2], "distill/onnxruntime/fp32/float": dets}
    (entry,) = paired_entries(gt, detections, resamples=30, confidence=0.9, seed=0)
    assert entry["kind"] == "distillation"
    assert (entry["a"], entry["b"]) == ("distill/onnxruntime/fp32/float", "student/onnxruntime/fp32/float")
    assert entry["confidence"] == 0.9 and entry["resamples"] == 30 and entry["n_images"] == 20
    assert entry["ci_low"] <= entry["delta_map50_95"] <= entry["ci_high"]
