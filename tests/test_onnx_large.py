"""Large ONNX files read lean (layercalc.importers.onnx._read_lean): a model's large initializers are left in the
file when it is read, and read from there only when their values are needed.

Oracles: ``onnx.load`` (the whole file, as layercalc read it before) — the same network, the same weights, value
for value; hand-built files whose data contradicts their dims, refused as the in-memory reading refuses them.
Time and memory are measured by bench/bench_onnx_import.py, not asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest

import layercalc
from layercalc import LayerCalcError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from layercalc.importers import onnx as importer  # noqa: E402


def mlp(path, features=(64, 300, 200, 10), doc=True):
    """x [1, 64] → Gemm → Relu → MatMul + Add → Relu → Gemm: weights of 76 KB, 240 KB and 8 KB (two above the
    lean threshold, one below), an int64 shape constant, metadata and a doc string around the graph."""
    gen = np.random.default_rng(0)
    inits, nodes, x = [], [], "x"
    for k, (fin, fout) in enumerate(zip(features, features[1:])):
        w = gen.standard_normal((fout, fin) if k != 1 else (fin, fout)).astype(np.float32)
        b = gen.standard_normal(fout).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"fc{k}.weight"), numpy_helper.from_array(b, f"fc{k}.bias")]
        if k == 1:
            nodes += [helper.make_node("MatMul", [x, f"fc{k}.weight"], [f"m{k}"]),
                      helper.make_node("Add", [f"m{k}", f"fc{k}.bias"], [f"y{k}"])]
        else:
            nodes.append(helper.make_node("Gemm", [x, f"fc{k}.weight", f"fc{k}.bias"], [f"y{k}"], transB=1))
        x = f"y{k}"
        if k < len(features) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{k}"]))
            x = f"r{k}"
    inits.append(numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape"))
    nodes.append(helper.make_node("Reshape", [x, "shape"], ["out"]))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 10])], initializer=inits,
                              doc_string="a graph" if doc else "")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    helper.set_model_props(model, {"author": "test"})
    onnx.save_model(model, str(path))
    return path


def test_lean_reading_gives_the_whole_file_model(tmp_path):
    path = mlp(tmp_path / "mlp.onnx")
    lean, was_lean = importer._read_model(onnx, path, "mlp.onnx")
    assert was_lean
    whole = onnx.load(str(path))
    # the same model but for the large raw data, which stays in the file (marked with its offset and length)
    for field in ("ir_version", "producer_name", "opset_import", "metadata_props"):
        assert getattr(lean, field) == getattr(whole, field)
    assert list(lean.graph.node) == list(whole.graph.node) and lean.graph.doc_string == "a graph"
    left = {i.name for i in lean.graph.initializer if i.data_location == TensorProto.EXTERNAL}
    assert left == {"fc0.weight", "fc1.weight"}              # 76,800 and 240,000 bytes; fc2's 8,000 read
    data = path.read_bytes()
    for t, w in zip(lean.graph.initializer, whole.graph.initializer):
        assert (t.name, list(t.dims), t.data_type) == (w.name, list(w.dims), w.data_type)
        if t.name in left:
            entries = {e.key: e.value for e in t.external_data}
            offset, length = int(entries["offset"]), int(entries["length"])
            assert data[offset:offset + length] == w.raw_data
        else:
            assert t == w


def test_same_network_and_weights_as_from_the_whole_file(tmp_path, monkeypatch):
    path = mlp(tmp_path / "mlp.onnx")
    spec = importer.spec_from_file(path, "mlp.onnx")
    weights = importer.weights_from_onnx(path)
    monkeypatch.setattr(importer, "_read_lean", lambda onnx, path: None)     # read whole, as onnx.load does
    assert importer.spec_from_file(path, "mlp.onnx") == spec
    whole = importer.weights_from_onnx(path)
    assert weights.keys() == whole.keys()
    for layer in weights:
        for name in weights[layer]:
            np.testing.assert_array_equal(weights[layer][name], whole[layer][name])
    # and the network the file describes: params by hand, and the run equals ONNX's reference evaluator
    net = layercalc.load(path)
    assert net.analyze().totals.params == 64 * 300 + 300 + 300 * 200 + 200 + 200 * 10 + 10
    x = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)
    from onnx.reference import ReferenceEvaluator
    expected = ReferenceEvaluator(onnx.load(str(path))).run(None, {"x": x})[0]
    np.testing.assert_allclose(net.run(x, weights=str(path)), expected, rtol=1e-4, atol=1e-4)


def _rewrite(path, change):
    model = onnx.load(str(path))
    change(model)
    onnx.save_model(model, str(path))


def test_data_contradicting_dims_refused_as_in_memory(tmp_path):
    path = mlp(tmp_path / "mlp.onnx")

    def shorten(model):
        w = model.graph.initializer[0]
        w.raw_data = w.raw_data[:-4]                   # 76,796 bytes for [300, 64] floats: one element short
    _rewrite(path, shorten)
    with pytest.raises(LayerCalcError, match=r"initializer 'fc0.weight' has dims \[300, 64\] \(19,200 elements, "
                                             r"76,800 bytes\) but its data holds 76796 bytes"):
        layercalc.load(path)


def test_file_naming_layercalc_marker_is_refused(tmp_path):
    """The marker is layercalc's own: a file that writes it is read whole, and the key refused."""
    path = mlp(tmp_path / "mlp.onnx")

    def mark(model):
        w = model.graph.initializer[0]
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for key, value in ((importer.IN_MODEL_FILE, "mlp.onnx"), ("offset", "0"), ("length", "76800")):
            entry = w.external_data.add()
            entry.key, entry.value = key, value
    _rewrite(path, mark)
    assert not importer._read_model(onnx, path, "mlp.onnx")[1]
    with pytest.raises(LayerCalcError, match="names external data by layercalc's own key"):
        importer.weights_from_onnx(path)


def test_truncated_file_one_line(tmp_path):
    path = mlp(tmp_path / "mlp.onnx")
    path.write_bytes(path.read_bytes()[:200_000])
    with pytest.raises(LayerCalcError, match="not a readable ONNX model"):
        layercalc.load(path)
