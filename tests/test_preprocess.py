"""deploy.preprocess: letterbox identical to ultralytics, tensor layout, box mapping back, JPEG decoding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deploy.errors import InputError
from deploy.preprocess import (
    LetterboxMeta,
    PreprocessSpec,
    decode_jpeg,
    letterbox,
    letterbox_geometry,
    preprocess,
    preprocess_batch,
    to_tensor,
)

SHAPES = [(720, 1280), (1280, 720), (333, 517), (97, 161), (96, 160), (1, 300), (300, 1), (50, 50), (5, 7)]
TARGETS = [(96, 160), (640, 640), (384, 640), (64, 64)]


def _image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("shape", SHAPES)
def test_letterbox_matches_ultralytics_pixel_for_pixel(shape, target):
    from ultralytics.data.augment import LetterBox

    img = _image(shape)
    ours, meta = letterbox(img, target)
    theirs = LetterBox(target, auto=False, center=True)(image=img.copy())
    assert ours.shape == (*target, 3)
    np.testing.assert_array_equal(ours, theirs)
    assert meta.orig_shape == shape and meta.input_shape == target


def test_tensor_matches_ultralytics_predictor_preprocess():
    import torch

    img = _image((123, 77), seed=3)
    padded, _ = letterbox(img, (64, 96))
    ours = to_tensor(padded)
    # what ultralytics' BasePredictor.preprocess does after LetterBox
    theirs = torch.from_numpy(padded).unsqueeze(0).permute(0, 3, 1, 2).contiguous().flip(1).float().div_(255).numpy()
    assert ours.dtype == np.float32 and ours.shape == (1, 3, 64, 96) and ours.flags.c_contiguous
    np.testing.assert_array_equal(ours, theirs)


def test_bgr_spec_and_custom_scale_and_pad():
    img = _image((40, 80), seed=1)
    spec = PreprocessSpec(channel_order="BGR", scale=0.5, pad_value=0)
    tensor, meta = preprocess(img, (64, 64), spec)
    assert meta.pad == (0, 16)
    np.testing.assert_array_equal(tensor[0, :, :16], 0.0)  # top padding is 0
    resized = cv2.resize(img, (64, 32), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(tensor[0, :, 16:48].transpose(1, 2, 0), resized * 0.5)


def test_top_left_placement_when_not_centered():
    _, meta = letterbox(_image((50, 100)), (64, 64), center=False)
    assert meta.pad == (0, 0) and meta.new_unpad == (32, 64)


@pytest.mark.parametrize("shape", SHAPES)
def test_to_original_matches_ultralytics_scale_boxes(shape):
    import torch
    from ultralytics.utils.ops import scale_boxes

    target = (96, 160)
    meta = letterbox_geometry(shape, target)
    rng = np.random.default_rng(0)
    xy = rng.uniform(-20, 180, (50, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(0, 60, (50, 2)).astype(np.float32)], 1)
    ours = meta.to_original(boxes)
    theirs = scale_boxes(target, torch.from_numpy(boxes.copy()), shape).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-4)
    assert ours.min() >= 0 and (ours[:, [0, 2]] <= shape[1]).all() and (ours[:, [1, 3]] <= shape[0]).all()


def test_to_original_inverts_the_letterbox():
    meta = letterbox_geometry((720, 1280), (384, 640))
    assert meta.gain == (0.5, 0.5) and meta.pad == (0, 12)
    np.testing.assert_allclose(meta.to_original(np.array([[10, 22, 110, 72]], np.float32)), [[20, 20, 220, 120]])
    assert meta.to_original(np.zeros((0, 4), np.float32)).shape == (0, 4)


def test_letterbox_meta_is_frozen():
    meta = letterbox_geometry((10, 10), (32, 32))
    with pytest.raises(AttributeError):
        meta.pad = (1, 1)  # type: ignore[misc]
    assert isinstance(meta, LetterboxMeta)


def test_preprocess_batch_stacks_and_handles_empty():
    imgs = [_image((50, 80), 1), _image((90, 40), 2)]
    tensor, metas = preprocess_batch(imgs, (64, 64))
    assert tensor.shape == (2, 3, 64, 64) and [m.orig_shape for m in metas] == [(50, 80), (90, 40)]
    np.testing.assert_array_equal(tensor[1:2], preprocess(imgs[1], (64, 64))[0])
    empty, none = preprocess_batch([], (64, 64))
    assert empty.shape == (0, 3, 64, 64) and none == []


def test_grayscale_and_bgra_are_converted():
    gray = _image((30, 40))[..., 0]
    t_gray, _ = preprocess(gray, (32, 32))
    t_bgr, _ = preprocess(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), (32, 32))
    np.testing.assert_array_equal(t_gray, t_bgr)
    bgra = np.dstack([_image((30, 40)), np.full((30, 40), 7, np.uint8)])
    np.testing.assert_array_equal(preprocess(bgra, (32, 32))[0], preprocess(bgra[..., :3].copy(), (32, 32))[0])


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10, 2), np.uint8), r"\(H, W, 3\)"),
        ([[1, 2]], "numpy"),
    ],
)
def test_bad_images_raise_input_error(image, match):
    with pytest.raises(InputError, match=match):
        preprocess(image, (32, 32))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"letterbox": False}, "letterbox"), ({"channel_order": "RGBA"}, "channel_order"), ({"layout": "NHWC"}, "layout")],
)
def test_unsupported_preprocess_specs_are_rejected(kwargs, match):
    with pytest.raises(InputError, match=match):
        PreprocessSpec(**kwargs)


def test_decode_jpeg_bytes_and_path(tmp_path):
    img = _image((20, 30))
    ok, png = cv2.imencode(".png", img)
    assert ok
    np.testing.assert_array_equal(decode_jpeg(png.tobytes()), img)
    path = tmp_path / "a.png"
    path.write_bytes(png.tobytes())
    np.testing.assert_array_equal(decode_jpeg(path), img)
    np.testing.assert_array_equal(decode_jpeg(str(path)), img)


def test_decode_jpeg_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.jpg.*does not exist"):
        decode_jpeg(tmp_path / "missing.jpg")
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(InputError, match="corrupt.jpg.*not a decodable"):
        decode_jpeg(bad)
    with pytest.raises(InputError, match="empty"):
        decode_jpeg(b"")
