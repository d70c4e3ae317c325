"""The Elasticsearch (Eland) runtimes, the vocabulary tokenizers they use, and the OpenSearch
SPARSE_ENCODING / SPARSE_TOKENIZE / TEXT_SIMILARITY runtimes, on tiny random models."""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from mlcommons.errors import NodeError
from mlcommons.types import FunctionName
from tests.elandkit import (
    BERT_SPECIALS,
    HIDDEN,
    eland_model,
    opensearch_archive,
    opensearch_model_doc,
    tiny_vocabulary,
    tokenization,
    vocabulary_upload,
    write_eland_folder,
)
from workers.extract import safe_extract
from workers.runtimes import load_runtime
from workers.runtimes.eland import load_eland_runtime
from workers.runtimes.vocab import InputTooLarge, Tokenization, load_vocab_tokenizer

TEXTS = [
    "Hello world.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "a",
    "What is sparse vector search? Dense embedding models and cross encoders score text.",
    "New York city, one two three!",
]
LONG = " ".join(["the quick brown fox jumps over the lazy dog"] * 20)  # ~180 tokens, past 64
QUERY = "what is vector search"
ATOL = 1e-5


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("runtimes-extra")


@pytest.fixture(scope="module")
def eland(workdir):
    """task_type -> (folder, inference_config, runtime)."""
    made = {}
    for task in ("text_embedding", "text_expansion", "text_similarity"):
        definition, vocabulary, config = eland_model(workdir, task)
        folder = write_eland_folder(workdir / f"eland-{task}", definition, vocabulary)
        made[task] = (folder, config, load_eland_runtime(folder, config))
    yield made
    for _, _, runtime in made.values():
        runtime.close()


@pytest.fixture(scope="module")
def opensearch(workdir):
    """function name -> (folder, info, runtime), each archive extracted as a deploy does."""
    made = {}
    for fn in ("SPARSE_ENCODING", "SPARSE_TOKENIZE", "TEXT_SIMILARITY"):
        zip_path, info = opensearch_archive(workdir, fn)
        folder = workdir / f"os-{fn.lower()}"
        safe_extract(zip_path, folder)
        made[fn] = (folder, info, load_runtime(folder, opensearch_model_doc(fn, info)))
    yield made
    for _, _, runtime in made.values():
        runtime.close()


def with_tokenization(config: dict, **changes) -> dict:
    task, settings = next(iter(config.items()))
    kind, opts = next(iter(settings["tokenization"].items()))
    return {task: {**settings, "tokenization": {kind: {**opts, **changes}}}}


def one_by_one(runtime, items) -> np.ndarray:
    return np.concatenate([runtime.forward(runtime.tokenize([item])) for item in items])


def assert_real_sparse(sparse: dict, vocabulary, specials=BERT_SPECIALS):
    assert sparse, "expected some non-zero weights"
    assert all(isinstance(t, str) and t in vocabulary for t in sparse)
    assert not set(sparse) & set(specials)
    assert all(isinstance(w, float) and w > 0 for w in sparse.values())


# -- vocabulary tokenizers -------------------------------------------------------------------------


def test_bert_tokenization_single_and_pair():
    tok = load_vocab_tokenizer(vocabulary_upload("bert"), tokenization(16))
    enc = tok.encode(["Hello World", "the quick brown foxes"])
    tokens = [[tok.id_to_token(i) for i in row[:n]] for row, n in zip(enc.input_ids, enc.token_counts)]
    assert tokens == [["[CLS]", "hello", "world", "[SEP]"], ["[CLS]", "the", "quick", "brown", "fox", "##es", "[SEP]"]]
    assert enc.input_ids.dtype == np.int64 and enc.input_ids.shape == (2, 7)
    assert enc.input_ids[0, 4:].tolist() == [tok.vocabulary.index("[PAD]")] * 3
    assert enc.attention_mask.tolist()[0] == [1, 1, 1, 1, 0, 0, 0]
    assert not enc.token_type_ids.any()
    pair = tok.encode_pairs([QUERY], ["hello world"])
    assert [tok.id_to_token(i) for i in pair.input_ids[0]] == [
        "[CLS]", "what", "is", "vector", "search", "[SEP]", "hello", "world", "[SEP]"]
    assert pair.token_type_ids[0].tolist() == [0] * 6 + [1] * 3
    assert tok.count(["Hello World"]) == [4] and tok.count_pairs([QUERY], ["hello world"]) == [9]


def test_do_lower_case_and_unknown_tokens():
    upload = vocabulary_upload("bert")
    cased = load_vocab_tokenizer(upload, tokenization(16, do_lower_case=False))
    ids = cased.encode(["Hello"]).input_ids[0]
    assert cased.id_to_token(int(ids[1])) == "[UNK]"
    lower = load_vocab_tokenizer(upload, tokenization(16))
    assert lower.id_to_token(int(lower.encode(["HÉLLO"]).input_ids[0][1])) == "hello"  # accents stripped


@pytest.mark.parametrize("kind, words", [
    ("mpnet", ["hello", "world"]),
    ("roberta", ["hello", "\u0120world"]),
    ("xlm_roberta", ["\u2581hello", "\u2581world"]),
])
def test_roberta_like_tokenizations(kind, words):
    tok = load_vocab_tokenizer(vocabulary_upload(kind), {kind: {"max_sequence_length": 16}})
    enc = tok.encode(["hello world"])
    assert [tok.id_to_token(i) for i in enc.input_ids[0]] == ["<s>", *words, "</s>"]
    pair = tok.encode_pairs(["hello"], ["hello"])
    tokens = [tok.id_to_token(i) for i in pair.input_ids[0]]
    assert tokens[0] == "<s>" and tokens.count("</s>") == 3 and tokens[-1] == "</s>"
    assert not pair.token_type_ids.any()  # one token type in RoBERTa-likes
    assert tok.settings.pair_extra_tokens == 4


def test_without_special_tokens():
    tok = load_vocab_tokenizer(vocabulary_upload("bert"), tokenization(16, with_special_tokens=False))
    enc = tok.encode(["hello world"])
    assert [tok.id_to_token(i) for i in enc.input_ids[0]] == ["hello", "world"]
    with pytest.raises(Exception, match="without special tokens"):
        tok.encode_pairs(["hello"], ["world"])


def test_truncate_first_cuts_single_texts_and_reports_it():
    tok = load_vocab_tokenizer(vocabulary_upload("bert"), tokenization(8))
    enc = tok.encode(["hello world", LONG])
    assert enc.token_counts.tolist() == [4, 8]
    assert tok.id_to_token(int(enc.input_ids[1, 7])) == "[SEP]"
    assert tok.truncated(["hello world", LONG]) == [False, True]
    assert tok.count([LONG]) == [8]


def test_truncate_none_refuses_long_input_like_elasticsearch():
    tok = load_vocab_tokenizer(vocabulary_upload("bert"), tokenization(8, truncate="none"))
    assert tok.encode(["the quick brown fox jumps over"]).token_counts.tolist() == [8]  # fits exactly
    with pytest.raises(InputTooLarge, match=r"^Input too large\. The tokenized input length \[11\] exceeds "
                                            r"the maximum sequence length \[8\]$") as info:
        tok.encode(["hello", "the quick brown fox jumps over the lazy dog"])
    assert info.value.status == 400
    with pytest.raises(InputTooLarge, match="Input too large"):
        tok.encode_pairs(["hello world"], ["the quick brown fox jumps"])


def test_pair_truncation_first_and_second():
    first = load_vocab_tokenizer(vocabulary_upload("bert"), tokenization(8, truncate="first"))
    enc = first.encode_pairs(["what is vector search today"], ["hello world"])
    assert [first.id_to_token(i) for i in enc.input_ids[0]] == [
        "[CLS]", "what", "is", "vector", "[SEP]", "hello", "world", "[SEP]"]
    # The query may be cut to nothing; the text may not be cut at all.
    enc = first.encode_pairs(["hello"], ["one two three four five"])
    assert [first.id_to_token(i) for i in enc.input_ids[0]][:2] == ["[CLS]", "[SEP]"]
    with pytest.raises(InputTooLarge, match=r"Attempting truncation \[first\] but input is too large for the "
                                            r"second sequence. The tokenized input length \[6\]"):
        first.encode_pairs(["hello"], ["one two three four five six"])
    second = load_vocab_tokenizer(vocabulary_upload("bert"), tokenization(8, truncate="second"))
    enc = second.encode_pairs(["what is"], ["one two three four five"])
    assert [second.id_to_token(i) for i in enc.input_ids[0]] == [
        "[CLS]", "what", "is", "[SEP]", "one", "two", "three", "[SEP]"]
    assert second.truncated_pairs(["what is"], ["one two three four five"]) == [True]
    with pytest.raises(InputTooLarge, match=r"too large for the first sequence"):
        second.encode_pairs([LONG], ["hello"])


def test_tokenization_config_errors():
    upload = vocabulary_upload("bert")
    assert Tokenization.parse(None) == Tokenization()
    for config, match in [
        ({"gpt2": {}}, "unsupported tokenization"),
        ({"bert": {}, "mpnet": {}}, "exactly one"),
        ({"bert": {"truncate": "middle"}}, "truncate"),
        ({"bert": {"max_sequence_length": 0}}, "max_sequence_length"),
    ]:
        with pytest.raises(NodeError, match=match):
            load_vocab_tokenizer(upload, config)
    with pytest.raises(NodeError, match="special tokens"):
        load_vocab_tokenizer({"vocabulary": ["hello", "world"]}, None)
    with pytest.raises(NodeError, match="merges"):
        load_vocab_tokenizer({"vocabulary": vocabulary_upload("roberta")["vocabulary"]}, {"roberta": {}})
    with pytest.raises(NodeError, match="scores"):
        load_vocab_tokenizer({"vocabulary": vocabulary_upload("xlm_roberta")["vocabulary"]}, {"xlm_roberta": {}})
    with pytest.raises(NodeError, match="vocabulary"):
        load_vocab_tokenizer({"vocabulary": []}, None)


# -- Eland runtimes -----------------------------------------------------------------------------


def test_eland_text_embedding(eland):
    runtime = eland["text_embedding"][2]
    assert runtime.function_name is FunctionName.TEXT_EMBEDDING
    assert runtime.task_type == "text_embedding" and runtime.device == "cpu"
    assert runtime.embedding_dimension == HIDDEN
    out = runtime.embed(TEXTS)
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), HIDDEN)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, runtime.embed(TEXTS))  # deterministic
    np.testing.assert_allclose(out, one_by_one(runtime, TEXTS), atol=ATOL)  # padding-invariant
    assert not np.allclose(out[0], out[1])
    assert runtime.forward(runtime.tokenize([])).shape == (0, HIDDEN)


def test_eland_embedding_rows_follow_encoded_select(eland):
    runtime = eland["text_embedding"][2]
    enc = runtime.tokenize(TEXTS)
    rows = [3, 0]
    np.testing.assert_allclose(runtime.forward(enc.select(rows)), runtime.embed([TEXTS[3], TEXTS[0]]), atol=ATOL)


def test_eland_embedding_size_must_agree(eland):
    folder, config, _ = eland["text_embedding"]
    with pytest.raises(NodeError, match=f"embedding_size is 384 but the model returns {HIDDEN}"):
        load_eland_runtime(folder, {"text_embedding": {**config["text_embedding"], "embedding_size": 384}})
    runtime = load_eland_runtime(folder, {"text_embedding": {"tokenization": config["text_embedding"]["tokenization"]}})
    assert runtime.embedding_dimension == HIDDEN
    runtime.close()


def test_eland_text_expansion(eland):
    runtime = eland["text_expansion"][2]
    vocab = tiny_vocabulary()
    assert runtime.function_name is FunctionName.SPARSE_ENCODING and runtime.task_type == "text_expansion"
    assert runtime.embedding_dimension == len(vocab)
    out = runtime.embed(TEXTS)
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), len(vocab))
    assert (out >= 0).all()
    np.testing.assert_array_equal(out, runtime.embed(TEXTS))
    np.testing.assert_allclose(out, one_by_one(runtime, TEXTS), atol=ATOL)
    for row, sparse in zip(out, runtime.sparse(TEXTS)):
        assert_real_sparse(sparse, vocab)
        assert sparse == runtime.to_sparse(row)
        ids = [vocab.index(t) for t in sparse]
        np.testing.assert_allclose([sparse[t] for t in sparse], row[ids])


def test_eland_text_similarity(eland):
    runtime = eland["text_similarity"][2]
    assert runtime.function_name is FunctionName.TEXT_SIMILARITY and runtime.task_type == "text_similarity"
    queries = [QUERY] * len(TEXTS)
    enc = runtime.tokenize_pairs(queries, TEXTS)
    assert enc.token_type_ids.any()  # the text's tokens are type 1
    scores = runtime.forward(enc)
    assert scores.dtype == np.float32 and scores.shape == (len(TEXTS),)
    np.testing.assert_array_equal(scores, runtime.score(QUERY, TEXTS))
    np.testing.assert_allclose(scores, one_by_one(runtime, list(zip(queries, TEXTS))), atol=ATOL)
    assert len(set(np.round(scores, 5))) > 1
    assert runtime.count_tokens([(QUERY, "hello world")]) == [9]
    with pytest.raises(TypeError):
        runtime.tokenize(["not a pair"])


def test_eland_truncation_first_and_none(eland):
    folder, config, _ = eland["text_embedding"]
    runtime = load_eland_runtime(folder, with_tokenization(config, max_sequence_length=16))
    try:
        enc = runtime.tokenize([LONG, "hello"])
        assert enc.token_counts.tolist() == [16, 3] and runtime.truncated([LONG, "hello"]) == [True, False]
        assert runtime.forward(enc).shape == (2, HIDDEN)
    finally:
        runtime.close()
    strict = load_eland_runtime(folder, with_tokenization(config, max_sequence_length=16, truncate="none"))
    try:
        assert strict.embed(["hello world"]).shape == (1, HIDDEN)
        with pytest.raises(InputTooLarge, match=r"Input too large.*\[16\]"):
            strict.tokenize(["hello", LONG])
    finally:
        strict.close()


def test_eland_similarity_truncates_the_query_with_first(eland):
    folder, config, _ = eland["text_similarity"]
    runtime = load_eland_runtime(folder, with_tokenization(config, max_sequence_length=12))
    try:
        enc = runtime.tokenize_pairs([LONG], ["hello world"])
        types = enc.token_type_ids[0].tolist()
        assert enc.token_counts.tolist() == [12] and types[-3:] == [1, 1, 1] and types.count(1) == 3
        assert runtime.forward(enc).shape == (1,)
    finally:
        runtime.close()


class _Boom:
    """Unpickling this would create a marker file: proves nothing is unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_eland_refuses_a_pickle(eland, tmp_path):
    folder, config, _ = eland["text_embedding"]
    bad = tmp_path / "pickled"
    shutil.copytree(folder, bad)
    marker = tmp_path / "unpickled"
    (bad / "model.pt").write_bytes(pickle.dumps(_Boom(str(marker))))
    with pytest.raises(NodeError, match="not a TorchScript archive"):
        load_eland_runtime(bad, config)
    assert not marker.exists()


def test_eland_refuses_a_torch_save_checkpoint(eland, tmp_path):
    folder, config, _ = eland["text_embedding"]
    bad = tmp_path / "checkpoint"
    shutil.copytree(folder, bad)
    buf = io.BytesIO()
    torch.save({"weight": torch.ones(2)}, buf)
    (bad / "model.pt").write_bytes(buf.getvalue())
    with pytest.raises(NodeError, match="not a TorchScript archive"):
        load_eland_runtime(bad, config)


def test_eland_folder_and_config_errors(eland, tmp_path):
    folder, config, _ = eland["text_embedding"]
    settings = config["text_embedding"]
    with pytest.raises(NodeError, match="unsupported inference_config \\[ner\\]"):
        load_eland_runtime(folder, {"ner": settings})
    with pytest.raises(NodeError, match="exactly one task"):
        load_eland_runtime(folder, {})
    no_vocab = tmp_path / "no-vocab"
    no_vocab.mkdir()
    shutil.copy(folder / "model.pt", no_vocab / "model.pt")
    with pytest.raises(NodeError, match="vocabulary.json"):
        load_eland_runtime(no_vocab, config)
    no_model = tmp_path / "no-model"
    no_model.mkdir()
    shutil.copy(folder / "vocabulary.json", no_model / "vocabulary.json")
    with pytest.raises(NodeError, match="model.pt"):
        load_eland_runtime(no_model, config)


def test_eland_runtime_close(eland):
    folder, config, _ = eland["text_expansion"]
    runtime = load_eland_runtime(folder, config)
    enc = runtime.tokenize(["hello"])
    runtime.close()
    runtime.close()
    with pytest.raises(NodeError, match="closed"):
        runtime.forward(enc)


# -- OpenSearch runtimes ------------------------------------------------------------------------


def test_opensearch_sparse_encoding(opensearch):
    runtime = opensearch["SPARSE_ENCODING"][2]
    vocab = tiny_vocabulary()
    assert runtime.function_name is FunctionName.SPARSE_ENCODING and runtime.device == "cpu"
    out = runtime.embed(TEXTS)
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), len(vocab))
    assert (out >= 0).all()
    np.testing.assert_array_equal(out, runtime.embed(TEXTS))
    np.testing.assert_allclose(out, one_by_one(runtime, TEXTS), atol=ATOL)
    for sparse in runtime.sparse(TEXTS):
        assert_real_sparse(sparse, vocab)


def test_opensearch_sparse_tokenize(opensearch):
    folder, info, runtime = opensearch["SPARSE_TOKENIZE"]
    idf = info["idf"]
    assert runtime.function_name is FunctionName.SPARSE_TOKENIZE
    out = runtime.embed(["Hello world", "the searches, hello!", "[CLS] zebra"])
    assert out.shape == (3, len(tiny_vocabulary())) and out.dtype == np.float32
    assert runtime.to_sparse(out[0]) == {"hello": idf["hello"], "world": idf["world"]}
    assert runtime.to_sparse(out[1]) == {"the": idf["the"], "search": idf["search"], "##es": 1.0,
                                         ",": 1.0, "hello": idf["hello"], "!": 1.0}
    third = runtime.to_sparse(out[2])
    assert "[CLS]" not in third and "[UNK]" not in third and set(third) <= set(tiny_vocabulary())
    np.testing.assert_array_equal(out, one_by_one(runtime, ["Hello world", "the searches, hello!", "[CLS] zebra"]))


def test_opensearch_sparse_tokenize_without_idf(opensearch, tmp_path):
    folder = tmp_path / "no-idf"
    folder.mkdir()
    shutil.copy(opensearch["SPARSE_TOKENIZE"][0] / "tokenizer.json", folder)
    runtime = load_runtime(folder, opensearch_model_doc("SPARSE_TOKENIZE", {}))
    assert runtime.sparse(["hello world"]) == [{"hello": 1.0, "world": 1.0}]
    runtime.close()


def test_opensearch_text_similarity(opensearch):
    runtime = opensearch["TEXT_SIMILARITY"][2]
    assert runtime.function_name is FunctionName.TEXT_SIMILARITY and runtime.embedding_dimension == 1
    pairs = [(QUERY, t) for t in TEXTS]
    scores = runtime.forward(runtime.tokenize(pairs))
    assert scores.dtype == np.float32 and scores.shape == (len(TEXTS),)
    np.testing.assert_array_equal(scores, runtime.score(QUERY, TEXTS))
    np.testing.assert_allclose(scores, one_by_one(runtime, pairs), atol=ATOL)
    assert len(set(np.round(scores, 5))) > 1
    assert runtime.count_tokens([(QUERY, "hello world")]) == [9]
    assert runtime.tokenize_pairs([QUERY], [LONG]).token_counts.tolist() == [64]  # tokenizer.json's limit


def test_opensearch_text_similarity_matches_eager_model(opensearch):
    """The traced archive scores as the eager classifier it was traced from (same seed)."""
    from tests.elandkit import SEED, _bert

    runtime = opensearch["TEXT_SIMILARITY"][2]
    enc = runtime.tokenize_pairs([QUERY] * 2, TEXTS[:2])
    model = _bert("classifier", len(tiny_vocabulary()), SEED)
    with torch.inference_mode():
        logits = model(**{k: torch.from_numpy(getattr(enc, k))
                          for k in ("input_ids", "attention_mask", "token_type_ids")}).logits
    np.testing.assert_allclose(runtime.forward(enc), logits[:, 0].numpy(), atol=ATOL)


@pytest.mark.parametrize("fn", ["SPARSE_ENCODING", "TEXT_SIMILARITY"])
def test_opensearch_refuses_a_pickled_pt(opensearch, tmp_path, fn):
    folder, info, _ = opensearch[fn]
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    marker = tmp_path / "unpickled"
    for pt in bad.glob("*.pt"):
        pt.write_bytes(pickle.dumps(_Boom(str(marker))))
    with pytest.raises(NodeError, match="not a TorchScript archive"):
        load_runtime(bad, opensearch_model_doc(fn, info))
    assert not marker.exists()


def test_opensearch_wrong_kind_of_model_is_refused(opensearch, eland, tmp_path):
    """An archive registered under another function: the output does not fit and says so."""
    cases = [
        ("TEXT_SIMILARITY", opensearch["SPARSE_ENCODING"][0]),  # dict without logits
        ("SPARSE_ENCODING", opensearch["TEXT_SIMILARITY"][0]),  # dict without output
    ]
    embedding = tmp_path / "embedding"  # (n, 32) embeddings, not one weight per vocabulary token
    embedding.mkdir()
    shutil.copy(eland["text_embedding"][0] / "model.pt", embedding / "tiny.pt")
    shutil.copy(opensearch["SPARSE_ENCODING"][0] / "tokenizer.json", embedding / "tokenizer.json")
    cases.append(("SPARSE_ENCODING", embedding))
    for fn, folder in cases:
        with pytest.raises(NodeError, match="unsupported model output"):
            load_runtime(folder, opensearch_model_doc(fn, {}))


def test_opensearch_archive_info(opensearch, workdir):
    for fn, (folder, info, _) in opensearch.items():
        assert len(info["model_content_hash_value"]) == 64 and info["model_content_size_in_bytes"] > 0
        assert (folder / "tokenizer.json").is_file()
    assert opensearch["TEXT_SIMILARITY"][1]["model_config"]["embedding_dimension"] == 1
    assert json.loads((opensearch["SPARSE_TOKENIZE"][0] / "idf.json").read_text())["hello"] == 3.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_eland_and_opensearch_runtimes_on_cuda(eland, opensearch):
    for task in ("text_embedding", "text_expansion"):
        folder, config, cpu = eland[task]
        gpu = load_eland_runtime(folder, config, device="cuda")
        assert gpu.device.startswith("cuda")
        np.testing.assert_allclose(gpu.embed(TEXTS), cpu.embed(TEXTS), atol=1e-4)
        gpu.close()
    folder, info, cpu = opensearch["TEXT_SIMILARITY"]
    gpu = load_runtime(folder, opensearch_model_doc("TEXT_SIMILARITY", info), device="cuda")
    np.testing.assert_allclose(gpu.score(QUERY, TEXTS), cpu.score(QUERY, TEXTS), atol=1e-4)
    gpu.close()
