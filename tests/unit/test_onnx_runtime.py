"""ONNX text-embedding archives: exported from a tiny SentenceTransformer, served by onnxruntime,
and compared with sentence-transformers itself."""
from __future__ import annotations

import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mlcommons.errors import NodeError
from mlcommons.types import ModelFormat, PoolingMode
from tests.modelkit import model_doc, tiny_archive
from workers.export import verification_texts
from workers.runtimes import load_runtime
from workers.runtimes.onnx import pool_numpy
from workers.runtimes.torchscript import pool


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """(info, extracted folder, runtime) for a tiny mean-pooled, normalised ST exported as ONNX."""
    workdir = tmp_path_factory.mktemp("onnx")
    zip_path, info = tiny_archive(workdir, "onnx")
    folder = workdir / "extracted"
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == ["tiny-st.onnx", "tokenizer.json"]
        zf.extractall(folder)
    runtime = load_runtime(folder, model_doc(info, ModelFormat.ONNX))
    yield info, folder, runtime
    runtime.close()


def test_onnx_embeddings_match_sentence_transformers(tiny_onnx):
    from sentence_transformers import SentenceTransformer

    info, _, runtime = tiny_onnx
    model = SentenceTransformer(info["source_path"], device="cpu")
    assert info["model_config"]["embedding_dimension"] == runtime.embedding_dimension
    for batch in verification_texts(runtime.max_length):
        got = runtime.embed(batch)
        want = model.encode(batch, batch_size=len(batch), convert_to_numpy=True)
        assert got.shape == want.shape and got.dtype == np.float32
        assert cosine(got, want).min() > 0.9999
    # normalised, as the model config says
    assert np.allclose(np.linalg.norm(runtime.embed(["a", "bb"]), axis=1), 1.0, atol=1e-5)


def test_padding_does_not_change_a_row(tiny_onnx):
    _, _, runtime = tiny_onnx
    alone = runtime.embed(["short"])
    padded = runtime.embed(["short", "a much longer text that pads the short one with many tokens"])
    assert cosine(alone, padded[:1]).min() > 0.99999


@pytest.mark.parametrize("mode", list(PoolingMode))
def test_numpy_pooling_agrees_with_torch_pooling(mode):
    rng = np.random.default_rng(1)
    tokens = rng.normal(size=(3, 7, 5)).astype(np.float32)
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] + [0] * 6], dtype=np.int64)
    want = pool(torch.from_numpy(tokens), torch.from_numpy(mask), mode).numpy()
    assert np.allclose(pool_numpy(tokens, mask, mode), want, atol=1e-5)


def test_threads_per_allocation_give_each_thread_its_session(tiny_onnx):
    _, _, runtime = tiny_onnx
    texts = ["one text", "and another one"]
    want = runtime.embed(texts)
    got = {}

    def allocation(i: int) -> None:
        runtime.use_threads(2)
        got[i] = (runtime.embed(texts), runtime._local.session)

    threads = [threading.Thread(target=allocation, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got[0][1] is not got[1][1] and got[0][1] is not None
    for i in range(2):
        assert np.allclose(got[i][0], want, atol=1e-6)


def test_archive_without_an_onnx_file(tiny_onnx, tmp_path):
    shutil.copy(tiny_onnx[1] / "tokenizer.json", tmp_path)
    with pytest.raises(NodeError, match="no .onnx file"):
        load_runtime(tmp_path, model_doc(tiny_onnx[0], ModelFormat.ONNX))


def test_external_data_outside_the_archive_is_refused(tiny_onnx, tmp_path):
    """A graph whose weights are 'external data' named ../secret is refused before onnxruntime
    opens anything."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"\0" * 64)
    folder = tmp_path / "archive"
    folder.mkdir()
    shutil.copy(tiny_onnx[1] / "tokenizer.json", folder)
    model = onnx.load(str(tiny_onnx[1] / "tiny-st.onnx"))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../secret"), ("offset", "0"), ("length", "64")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(folder / "model.onnx"))
    with pytest.raises(NodeError, match=r"external data outside the archive or missing: \[\.\./secret\]"):
        load_runtime(folder, model_doc(tiny_onnx[0], ModelFormat.ONNX))


def test_a_file_that_is_not_onnx(tiny_onnx, tmp_path):
    shutil.copy(tiny_onnx[1] / "tokenizer.json", tmp_path)
    Path(tmp_path / "model.onnx").write_bytes(b"\x80\x04not a protobuf at all")
    with pytest.raises(NodeError, match="as ONNX|onnxruntime cannot load"):
        load_runtime(tmp_path, model_doc(tiny_onnx[0], ModelFormat.ONNX))
