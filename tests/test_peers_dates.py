"""Ultralytics writes its export time into the files it exports; the peers stage removes it (no timestamps inside
artifacts) and keeps everything else."""

from __future__ import annotations

import onnx
import yaml
from onnx import TensorProto, helper

from pipeline.peers import strip_export_dates


def _onnx_with(path, props: dict[str, str]) -> None:
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    model = helper.make_model(graph)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def test_dates_removed_everything_else_kept(tmp_path):
    _onnx_with(tmp_path / "onnx_int8" / "weights_int8.onnx", {"date": "2026-11-29T05:07:06", "stride": "32"})
    _onnx_with(tmp_path / "onnx_fp32" / "weights.onnx", {"stride": "32"})
    meta = tmp_path / "ov" / "weights_openvino_model" / "metadata.yaml"
    meta.parent.mkdir(parents=True)
    meta.write_text(yaml.safe_dump({"author": "Ultralytics", "date": "2026-11-29", "names": {0: "pedestrian"}}))

    changed = strip_export_dates(tmp_path)
    assert sorted(p.name for p in changed) == ["metadata.yaml", "weights_int8.onnx"]
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "onnx_int8" / "weights_int8.onnx")).metadata_props}
    assert props == {"stride": "32"}
    assert yaml.safe_load(meta.read_text()) == {"author": "Ultralytics", "names": {0: "pedestrian"}}
    assert strip_export_dates(tmp_path) == []  # nothing left to remove
