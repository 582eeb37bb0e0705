"""deploy.corruptions: pure, deterministic, seeded, severity-monotone, validated."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from deploy.corruptions import KINDS, CorruptionSpec, apply, image_seed
from deploy.errors import InputError

BDD = Path(__file__).resolve().parents[1].parent / "shared/datasets/bdd100k-mini"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A real BDD100K frame downscaled to 320x180 when present, else a synthetic road-like frame."""
    images = sorted((BDD / "images").glob("*.jpg"))[:1]
    if images:
        return cv2.resize(cv2.imread(str(images[0])), (320, 180), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    img = np.full((180, 320, 3), 90, np.uint8)
    img[:80] = (200, 170, 140)  # sky
    img += rng.integers(0, 40, img.shape, dtype=np.uint8)
    cv2.rectangle(img, (140, 80), (170, 150), (30, 30, 200), -1)
    return img


def digest(img: np.ndarray) -> str:
    return hashlib.sha256(img.tobytes()).hexdigest()


def test_kinds_are_the_six_of_the_spec():
    assert KINDS == ("night", "fog", "rain", "blur", "noise", "jpeg")


@pytest.mark.parametrize("kind", KINDS)
def test_pure_deterministic_and_shaped(kind, frame):
    before = frame.copy()
    a = apply(kind, frame, seed=7, severity=3)
    b = apply(kind, frame, seed=7, severity=3)
    assert np.array_equal(frame, before)  # input untouched
    assert a.shape == frame.shape and a.dtype == np.uint8 and a.flags.c_contiguous
    assert digest(a) == digest(b)  # same seed -> same bytes
    assert not np.array_equal(a, frame)  # it does change the image


@pytest.mark.parametrize("kind", ["night", "fog", "rain", "blur", "noise"])
def test_seed_changes_random_corruptions(kind, frame):
    assert digest(apply(kind, frame, seed=1)) != digest(apply(kind, frame, seed=2))


@pytest.mark.parametrize("kind", KINDS)
def test_severity_increases_the_damage(kind, frame):
    err = [np.abs(apply(kind, frame, seed=3, severity=s).astype(float) - frame).mean() for s in (1, 3, 5)]
    assert err[0] < err[1] < err[2], err


def test_night_is_darker_and_fog_is_flatter(frame):
    night = apply("night", frame, seed=0, severity=3)
    fog = apply("fog", frame, seed=0, severity=3)
    assert night.mean() < 0.6 * frame.mean()
    assert fog.std() < 0.7 * frame.std()
    assert fog.mean() > frame.mean() - 5


def test_small_and_odd_sized_images_work():
    tiny = np.random.default_rng(0).integers(0, 255, (7, 5, 3), dtype=np.uint8)
    for kind in KINDS:
        assert apply(kind, tiny, seed=0, severity=5).shape == (7, 5, 3)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("snow", None, 0, 3), "expected one of"),
        (("fog", None, 0, 6), "severity"),
        (("fog", None, 0, True), "severity"),
        (("fog", None, -1, 3), "seed"),
        (("fog", np.zeros((4, 4), np.uint8), 0, 3), "uint8 (H, W, 3)"),
        (("fog", np.zeros((4, 4, 3), np.float32), 0, 3), "uint8 (H, W, 3)"),
    ],
)
def test_bad_arguments_are_input_errors(args, needle, frame):
    kind, img, seed, severity = args
    with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        apply(kind, frame if img is None else img, seed, severity)


def test_spec_derives_a_seed_per_image(frame):
    spec = CorruptionSpec("noise", severity=2, seed=5)
    assert digest(spec(frame, 1)) == digest(spec(frame, 1))
    assert digest(spec(frame, 1)) != digest(spec(frame, 2))
    assert digest(spec(frame, 3)) == digest(apply("noise", frame, image_seed(5, 3), 2))
    with pytest.raises(InputError):
        CorruptionSpec("hail")
