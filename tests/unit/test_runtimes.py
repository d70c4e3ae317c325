"""Runtimes against real (tiny, random) models: export → safe_extract → load_runtime → embed,
compared with sentence-transformers and with hand-written torch; then the bundled MiniLM."""
from __future__ import annotations

import gc
import json
import os
import shutil
import weakref
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mlcommons.errors import NodeError
from tests.modelkit import minilm_path, model_doc, tiny_archive
from workers.export import export_sentence_transformer
from workers.extract import safe_extract
from workers.runtimes import Encoded, load_runtime
from workers.runtimes.tokenizer import TextTokenizer

# transformers is imported lazily (inside fixtures), so this still takes effect: never fetch.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DOCS = [
    "Hello world.",
    "The quick brown fox jumps over the lazy dog.",
    "a",
    "Vector search finds documents whose embeddings lie close to the query's embedding, "
    "which is why the quality of the embedding model matters so much for relevance.",
    "Numbers 42 and 3.14, emoji-free punctuation: (yes); [no]!",
    "Ünïcödé text from Zürich and Kraków.",
]
LONG_DOC = " ".join(f"word{i % 50} filler text" for i in range(200))  # well past 128 tokens


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def extract(zip_path: Path, dest: Path) -> Path:
    safe_extract(zip_path, dest)
    return dest


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runtimes")


@pytest.fixture(scope="module")
def tiny_st(workdir):
    """(zip, info, extracted folder, runtime) for a tiny mean-pooled, normalised ST."""
    zip_path, info = tiny_archive(workdir, "sentence_transformers")
    folder = extract(zip_path, workdir / "tiny-st-extracted")
    runtime = load_runtime(folder, model_doc(info))
    yield zip_path, info, folder, runtime
    runtime.close()


@pytest.fixture(scope="module")
def tiny_st_model(tiny_st):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(tiny_st[1]["source_path"], device="cpu")


# -- sentence-transformers export ---------------------------------------------------------------


def test_export_layout_and_info(tiny_st):
    zip_path, info, folder, runtime = tiny_st
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == ["tiny-st.pt", "tokenizer.json"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    assert info["model_content_size_in_bytes"] == zip_path.stat().st_size
    assert len(info["model_content_hash_value"]) == 64
    config = info["model_config"]
    assert config["model_type"] == "bert"
    assert config["embedding_dimension"] == 32 == runtime.embedding_dimension
    assert config["framework_type"] == "sentence_transformers"
    assert config["pooling_mode"] == "MEAN"
    assert config["normalize_result"] is True
    assert json.loads(config["all_config"])["hidden_size"] == 32
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    assert tokenizer["padding"] is None
    assert tokenizer["truncation"] == {
        "direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0
    }


def test_embeddings_match_sentence_transformers(tiny_st, tiny_st_model):
    runtime = tiny_st[3]
    docs = DOCS + [LONG_DOC]
    got = runtime.embed(docs)
    want = tiny_st_model.encode(docs)
    assert got.dtype == np.float32 and got.shape == (len(docs), 32)
    assert cosine(got, want).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_padding_invariance(tiny_st):
    runtime = tiny_st[3]
    alone = runtime.embed(["short doc"])
    batch = runtime.embed([DOCS[3], "short doc", LONG_DOC, DOCS[1]])
    np.testing.assert_allclose(batch[1], alone[0], atol=1e-5)
    assert cosine(alone, batch[1:2])[0] >= 0.99999


def test_order_and_empty_batch(tiny_st):
    runtime = tiny_st[3]
    forwards = runtime.embed(DOCS)
    backwards = runtime.embed(DOCS[::-1])
    np.testing.assert_allclose(forwards, backwards[::-1], atol=1e-5)
    empty = runtime.embed([])
    assert empty.shape == (0, 32) and empty.dtype == np.float32


def test_tokenize_pads_to_the_longest_and_truncates(tiny_st):
    runtime = tiny_st[3]
    enc = runtime.tokenize(["one two", "a somewhat longer text here", LONG_DOC])
    assert isinstance(enc, Encoded) and len(enc) == 3
    for array in (enc.input_ids, enc.attention_mask, enc.token_type_ids):
        assert array.dtype == np.int64 and array.shape == (3, 128)
    assert enc.token_counts.tolist() == enc.attention_mask.sum(1).tolist()
    assert enc.token_counts[2] == 128  # truncated to the tokenizer.json max_length
    assert enc.input_ids[0, enc.token_counts[0]:].tolist() == [0] * (128 - enc.token_counts[0])
    assert runtime.count_tokens(["one two", LONG_DOC]) == [4, 128]  # [CLS] one two [SEP]
    short = runtime.tokenize(["one two", "three"])
    assert short.input_ids.shape == (2, 4)


def test_select_rows_of_one_tokenization(tiny_st):
    runtime = tiny_st[3]
    docs = [LONG_DOC, "tiny", DOCS[3], DOCS[1]]
    enc = runtime.tokenize(docs)
    part = enc.select([3, 1])
    assert part.input_ids.shape == (2, enc.token_counts[3]) and part.input_ids.flags.c_contiguous
    np.testing.assert_allclose(runtime.forward(part), runtime.embed([docs[3], docs[1]]), atol=1e-6)
    assert runtime.forward(enc.select([])).shape == (0, 32)


def test_tokenizer_disables_fixed_padding_from_the_file(tiny_st):
    # The source model's tokenizer.json (saved from MiniLM's) pads every text to 128 tokens.
    path = Path(tiny_st[1]["source_path"]) / "tokenizer.json"
    assert json.loads(path.read_text())["padding"]["strategy"] == {"Fixed": 128}
    tok = TextTokenizer.from_file(path, max_length=16)
    enc = tok.encode(["hello", "hello there world"])
    assert enc.input_ids.shape == (2, 5)
    assert tok.pad_id == 0
    assert tok.max_length == 128  # the file's truncation wins over the fallback


def test_tokenizer_without_truncation_uses_the_fallback(tmp_path):
    data = json.loads((minilm_path() / "tokenizer.json").read_text())
    data["truncation"] = None
    data["padding"] = None
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data))
    tok = TextTokenizer.from_file(path, max_length=10)
    assert tok.max_length == 10 and tok.pad_id == 0  # from the [PAD] token
    assert tok.count([LONG_DOC]) == [10]


def test_close_drops_the_weights(tiny_st):
    folder, info = tiny_st[2], tiny_st[1]
    runtime = load_runtime(folder, model_doc(info))
    module = weakref.ref(runtime._module)
    runtime.close()
    gc.collect()
    assert module() is None
    with pytest.raises(NodeError, match="closed"):
        runtime.embed(["x"])
    runtime.close()  # idempotent


# -- load_runtime checks ------------------------------------------------------------------------


def test_dimension_mismatch_raises(tiny_st):
    doc = model_doc(tiny_st[1])
    doc["model_config"]["embedding_dimension"] = 384
    with pytest.raises(NodeError, match="embedding_dimension is 384.*32"):
        load_runtime(tiny_st[2], doc)


def test_model_document_variants(tiny_st):
    folder, info = tiny_st[2], tiny_st[1]
    legacy = {
        "algorithm": "text_embedding",
        "model_format": "torch_script",
        "model_config": {**info["model_config"], "framework_type": "SENTENCE_TRANSFORMERS"},
    }
    runtime = load_runtime(folder, legacy)
    assert runtime.function_name.value == "TEXT_EMBEDDING" and runtime.device == "cpu"
    runtime.close()
    for change, match in [
        ({"model_format": "ONNX"}, "no .onnx file"),
        ({"model_format": "ONNX", "function_name": "SPARSE_ENCODING"}, "unsupported model"),
        ({"function_name": "SPARSE_ENCODING"}, "unsupported model"),
        ({"function_name": "KMEANS"}, "unknown function_name"),
        ({"model_format": None}, "no model_format"),
        ({"model_config": {**info["model_config"], "framework_type": "tf"}}, "framework_type"),
        ({"model_config": {**info["model_config"], "pooling_mode": "median"}}, "pooling_mode"),
    ]:
        with pytest.raises(NodeError, match=match):
            load_runtime(folder, {**model_doc(info), **change})


def test_archive_without_a_pt_file(tiny_st, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(tiny_st[2] / "tokenizer.json", folder)
    with pytest.raises(NodeError, match="no TorchScript .pt file"):
        load_runtime(folder, model_doc(tiny_st[1]))


def test_archive_with_two_pt_files(tiny_st, tmp_path):
    zip_path = tmp_path / "two.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.write(tiny_st[2] / "tiny-st.pt", "tiny-st.pt")
        zf.write(tiny_st[2] / "tiny-st.pt", "extra/other.pt")
        zf.write(tiny_st[2] / "tokenizer.json", "tokenizer.json")
    folder = extract(zip_path, tmp_path / "two")
    with pytest.raises(NodeError, match="more than one .pt file: extra/other.pt, tiny-st.pt"):
        load_runtime(folder, model_doc(tiny_st[1]))


def test_pt_one_folder_down(tiny_st, tmp_path):
    folder = tmp_path / "m"
    (folder / "inner").mkdir(parents=True)
    shutil.copy(tiny_st[2] / "tiny-st.pt", folder / "inner")
    shutil.copy(tiny_st[2] / "tokenizer.json", folder / "inner")
    runtime = load_runtime(folder, model_doc(tiny_st[1]))
    np.testing.assert_allclose(runtime.embed(DOCS), tiny_st[3].embed(DOCS), atol=1e-6)


class _Boom:
    """Unpickling this runs os.mkdir(marker): proof that nothing unpickled Python objects."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_pickle_is_not_loaded(tiny_st, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"weights": _Boom(marker)}, folder / "model.pt")
    shutil.copy(tiny_st[2] / "tokenizer.json", folder)
    with pytest.raises(NodeError, match="cannot load model.pt as TorchScript"):
        load_runtime(folder, model_doc(tiny_st[1]))
    assert not marker.exists()


# -- other calling conventions --------------------------------------------------------------------


def test_dict_input_that_reads_token_type_ids(tiny_st, tiny_st_model, tmp_path):
    enc = tiny_st[3].tokenize(DOCS[:3])
    sample = {k: torch.from_numpy(getattr(enc, k)) for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        traced = torch.jit.trace(tiny_st_model, (sample,), strict=False)
    folder = tmp_path / "m"
    folder.mkdir()
    traced.save(str(folder / "model.pt"))
    shutil.copy(tiny_st[2] / "tokenizer.json", folder)
    runtime = load_runtime(folder, model_doc(tiny_st[1]))
    assert cosine(runtime.embed(DOCS), tiny_st_model.encode(DOCS)).min() >= 0.9999


@pytest.fixture(scope="module")
def tiny_bert(workdir):
    from transformers import BertModel

    zip_path, info = tiny_archive(workdir, "huggingface", pooling_mode="MEAN", normalize=False)
    return BertModel.from_pretrained(info["source_path"]).eval(), info


def _per_doc_reference(bert, runtime, docs, mode: str, normalize: bool) -> np.ndarray:
    """Each doc alone (no padding at all), pooled by hand."""
    rows = []
    for doc in docs:
        enc = runtime.tokenize([doc])
        with torch.inference_mode():
            hidden = bert(
                input_ids=torch.from_numpy(enc.input_ids),
                attention_mask=torch.from_numpy(enc.attention_mask),
            ).last_hidden_state[0]
        vec = {
            "MEAN": hidden.mean(0),
            "CLS": hidden[0],
            "MAX": hidden.max(0).values,
            "MEAN_SQRT_LEN": hidden.sum(0) / hidden.shape[0] ** 0.5,
        }[mode]
        if normalize:
            vec = vec / vec.norm()
        rows.append(vec.numpy())
    return np.stack(rows)


@pytest.mark.parametrize(
    "mode, normalize", [("MEAN", True), ("CLS", False), ("MAX", True), ("mean_sqrt_len", False)]
)
def test_bare_transformer_pooling(workdir, tiny_bert, mode, normalize):
    bert, _ = tiny_bert
    zip_path, info = tiny_archive(workdir, "huggingface", pooling_mode=mode, normalize=normalize)
    assert info["model_config"]["framework_type"] == "huggingface_transformers"
    assert info["model_config"]["pooling_mode"] == mode.upper()
    runtime = load_runtime(extract(zip_path, workdir / zip_path.stem), model_doc(info))
    docs = DOCS + [LONG_DOC]
    got = runtime.embed(docs)
    want = _per_doc_reference(bert, runtime, docs, mode.upper(), normalize)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
    runtime.close()


class _ElandStyle(torch.nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids, position_ids):
        out = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
        )
        return out.last_hidden_state, out.pooler_output


def test_eland_style_positional_signature(tiny_bert, tiny_st, tmp_path):
    bert, info = tiny_bert
    enc = tiny_st[3].tokenize(DOCS[:3])
    ids = torch.from_numpy(enc.input_ids)
    sample = (
        ids,
        torch.from_numpy(enc.attention_mask),
        torch.from_numpy(enc.token_type_ids),
        torch.arange(ids.shape[1]).expand_as(ids),
    )
    with torch.no_grad():
        traced = torch.jit.trace(_ElandStyle(bert).eval(), sample)
    folder = tmp_path / "m"
    folder.mkdir()
    traced.save(str(folder / "model.pt"))
    shutil.copy(tiny_st[2] / "tokenizer.json", folder)
    doc = model_doc(info)
    doc["model_config"]["pooling_mode"] = "cls"
    runtime = load_runtime(folder, doc)
    want = _per_doc_reference(bert, runtime, DOCS, "CLS", normalize=False)
    np.testing.assert_allclose(runtime.embed(DOCS), want, atol=2e-5, rtol=1e-4)


# -- the real all-MiniLM-L6-v2 ----------------------------------------------------------------------


MINILM_DOCS = [
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "hi",
    "The mitochondria is the powerhouse of the cell.",
    "OpenSearch is a community-driven, open source search and analytics suite.",
    "How do I reset my password if I no longer have access to my email?",
    "Dogs are loyal companions.",
    "Quantum entanglement links particles across arbitrary distances.",
    "I love pizza with extra cheese and mushrooms!",
    "The stock market fell 3% on Tuesday amid inflation fears.",
    "Machine learning models map text to dense vectors.",
    "¿Dónde está la biblioteca?",
    "Das ist ein deutscher Satz über Wetter und Züge.",
    "1234567890",
    "e = mc^2; F = ma; PV = nRT",
    "A",
    "The the the the the the the the the the",
    "Short.",
    "Long text: "
    + " ".join(
        f"Sentence {i} describes how distributed systems replicate state across nodes "
        "while tolerating failures."
        for i in range(25)
    ),
    "Customers who bought this item also bought headphones and a phone case.",
]


@pytest.fixture(scope="module")
def minilm(workdir):
    from sentence_transformers import SentenceTransformer

    zip_path = workdir / "all-MiniLM-L6-v2.zip"
    info = export_sentence_transformer(minilm_path(), zip_path, name="all-MiniLM-L6-v2")
    runtime = load_runtime(extract(zip_path, workdir / "minilm"), model_doc(info))
    yield info, runtime, SentenceTransformer(str(minilm_path()), device="cpu")
    runtime.close()


def test_minilm_matches_sentence_transformers(minilm):
    info, runtime, model = minilm
    config = info["model_config"]
    assert (config["model_type"], config["embedding_dimension"]) == ("bert", 384)
    assert (config["pooling_mode"], config["normalize_result"]) == ("MEAN", True)
    assert runtime.count_tokens([MINILM_DOCS[18]]) == [256]
    assert len(model.tokenizer(MINILM_DOCS[18])["input_ids"]) > 256
    got = runtime.embed(MINILM_DOCS)
    want = model.encode(MINILM_DOCS, batch_size=8)
    cos = cosine(got, want)
    assert cos.min() >= 0.9999, cos
    alone = np.concatenate([runtime.embed([d]) for d in MINILM_DOCS[:4]])
    assert cosine(alone, got[:4]).min() >= 0.99999
