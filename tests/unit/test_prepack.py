"""Linear layers on packed weights (workers/runtimes/prepack.py): the runtimes that adopt them
give the same vectors, scores and weights as the modules they came from, on real (tiny) traced
models; what the rewrite cannot take is left as it was."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from tests.elandkit import eland_model, opensearch_archive, opensearch_model_doc, write_eland_folder
from tests.modelkit import model_doc, tiny_archive
from workers.extract import safe_extract
from workers.runtimes import load_runtime
from workers.runtimes import prepack as prepack_module
from workers.runtimes.eland import load_eland_runtime
from workers.runtimes.prepack import LINEAR, agrees, bf16_available, prepack_linears

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")

TEXTS = [
    "Hello world.",
    "a",
    "The quick brown fox jumps over the lazy dog near the river bank, twice, and then once more.",
    "Numbers 42 and 3.14; (yes) [no]!",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("prepack")


@pytest.mark.parametrize("kind", ["sentence_transformers", "huggingface"])
def test_a_text_embedding_model_gives_the_same_vectors_on_packed_weights(workdir, kind):
    zip_path, info = tiny_archive(workdir / kind, kind)
    folder = workdir / f"{kind}-model"
    safe_extract(zip_path, folder)
    plain = load_runtime(folder, model_doc(info), prepack=False)
    packed = load_runtime(folder, model_doc(info))
    assert plain.prepacked_linears == 0
    # Two layers of a BERT: query, key, value, output, intermediate, output each.
    assert packed.prepacked_linears == 12
    graph = packed._module.graph
    assert not graph.findAllNodes("aten::linear")
    assert not graph.findAllNodes("aten::gelu"), "the GELU after each intermediate layer is fused in"
    for texts in (TEXTS, TEXTS[:1], TEXTS[1:2] * 3):  # padded batches and single rows
        np.testing.assert_allclose(packed.embed(texts), plain.embed(texts), rtol=1e-4, atol=1e-5)
    plain.close()
    packed.close()


def test_elastic_and_opensearch_runtimes_of_every_task_are_packed_and_agree(workdir):
    for task in ("text_embedding", "text_expansion", "text_similarity"):
        definition, vocabulary, config = eland_model(workdir, task)
        folder = write_eland_folder(workdir / f"eland-{task}", definition, vocabulary)
        plain, packed = load_eland_runtime(folder, config, prepack=False), load_eland_runtime(folder, config)
        assert packed.prepacked_linears > 0, task
        batch = [["what is search", t] for t in TEXTS] if task == "text_similarity" else TEXTS
        np.testing.assert_allclose(packed.forward(packed.tokenize(batch)), plain.forward(plain.tokenize(batch)),
                                   rtol=1e-4, atol=1e-5, err_msg=task)
    for fn in ("SPARSE_ENCODING", "TEXT_SIMILARITY"):
        zip_path, info = opensearch_archive(workdir, fn)
        folder = workdir / f"os-{fn.lower()}"
        safe_extract(zip_path, folder)
        doc = opensearch_model_doc(fn, info)
        plain, packed = load_runtime(folder, doc, prepack=False), load_runtime(folder, doc)
        assert packed.prepacked_linears > 0, fn
        batch = [("what is search", t) for t in TEXTS] if fn == "TEXT_SIMILARITY" else TEXTS
        np.testing.assert_allclose(packed.forward(packed.tokenize(batch)), plain.forward(plain.tokenize(batch)),
                                   rtol=1e-4, atol=1e-5, err_msg=fn)


class Tied(torch.nn.Module):
    """A weight used by two linears and by a matmul, a linear whose output the GELU does not
    have to itself, and a linear without a bias."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Linear(16, 16)
        self.b = torch.nn.Linear(16, 16, bias=False)
        self.c = torch.nn.Linear(16, 16)
        self.c.weight = self.a.weight

    def forward(self, x):
        y = self.a(x)
        return torch.nn.functional.gelu(y) + y + self.b(x) + self.c(x) + x @ self.a.weight


def test_a_shared_weight_keeps_its_dense_copy_for_other_uses_and_an_unshared_result_is_not_fused():
    x = torch.randn(3, 5, 16)
    traced = torch.jit.trace(Tied().eval(), x)
    packed, count = prepack_linears(traced)
    assert count == 3
    graph = packed.graph
    assert len(graph.findAllNodes(LINEAR)) == 3 and not graph.findAllNodes("aten::linear")
    assert len(graph.findAllNodes("aten::gelu")) == 1, "y is used after the GELU too: nothing to fuse"
    matmul = graph.findAllNodes("aten::matmul")[0]
    assert not matmul.inputsAt(1).node().output().toIValue().is_mkldnn  # the matmul keeps the dense weight
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), traced(x), rtol=1e-4, atol=1e-5)


def test_two_linears_on_one_weight_share_one_packed_copy():
    class TwoOnOne(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.a = torch.nn.Linear(16, 16)
            self.b = torch.nn.Linear(16, 16)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.a(x) * self.b(x)

    x = torch.randn(2, 7, 16)
    traced = torch.jit.trace(TwoOnOne().eval(), x)
    packed, count = prepack_linears(traced)
    assert count == 2
    weights = {node.inputsAt(1).unique() for node in packed.graph.findAllNodes(LINEAR)}
    assert len(weights) == 1
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), traced(x), rtol=1e-4, atol=1e-5)


def test_a_module_without_a_linear_is_left_alone():
    class Pool(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.normalize(x.mean(dim=1), dim=-1)

    assert prepack_linears(torch.jit.trace(Pool().eval(), torch.randn(2, 3, 4))) is None


def test_agreement_means_the_same_shape_and_the_same_values_up_to_rounding():
    reference = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    assert agrees(reference + 1e-7, reference)
    assert not agrees(reference[:3], reference)
    assert not agrees(reference.astype(np.float64), reference)
    assert not agrees(reference + 0.01, reference)


needs_bf16 = pytest.mark.skipif(not bf16_available(), reason="this CPU does not multiply bfloat16 natively "
                                "(no avx512_bf16 or AMX): bfloat16 linears are not packed here")


@needs_bf16
def test_bfloat16_linears_run_on_packed_bfloat16_weights_and_stay_close_to_float32(workdir):
    zip_path, info = tiny_archive(workdir / "bf16", "sentence_transformers")
    folder = workdir / "bf16-model"
    safe_extract(zip_path, folder)
    plain = load_runtime(folder, model_doc(info), prepack=False)
    narrow = load_runtime(folder, model_doc(info), prepack=False)
    assert narrow.prepack("bfloat16") == 12 and narrow.prepacked_precision == "bfloat16"
    graph = narrow._module.graph
    linears = graph.findAllNodes(LINEAR)
    assert len(linears) == 12 and not graph.findAllNodes("aten::linear")
    assert all(node.inputsAt(1).toIValue().dtype == torch.bfloat16 for node in linears)
    feeds = [node.inputsAt(0).node().kind() for node in linears]
    # Each input rounded to bfloat16 first, but the output layer takes the intermediate layer's
    # bfloat16 output as it is (no widening and rounding again between them), once per layer.
    assert feeds.count(LINEAR) == 2 and feeds.count("aten::to") == 10, feeds
    for texts in (TEXTS, TEXTS[:1]):
        got, want = narrow.embed(texts), plain.embed(texts)
        assert got.dtype == np.float32 and got.shape == want.shape
        cosine = (got * want).sum(axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        assert (cosine >= 0.999).all(), cosine
        assert not np.allclose(got, want, rtol=1e-4, atol=1e-5), "bfloat16 rounding shows: these are not float32's"
    plain.close()
    narrow.close()


@needs_bf16
def test_elastic_and_opensearch_runtimes_of_every_task_take_bfloat16_within_its_tolerance(workdir):
    """Each runtime packs, in bfloat16 where its warm-up output stays within 2%, else in float32
    (this tiny random cross-encoder's one score is near zero, so 2% of it is too little room)."""
    taken = {}

    def check(name, plain, narrow, batch):
        assert narrow.prepack("bfloat16") > 0, name
        taken[name] = narrow.prepacked_precision
        got, want = narrow.forward(narrow.tokenize(batch)), plain.forward(plain.tokenize(batch))
        if taken[name] == "bfloat16":
            assert np.linalg.norm(got - want) <= 0.02 * np.linalg.norm(want), name
        else:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)

    for task in ("text_embedding", "text_expansion", "text_similarity"):
        definition, vocabulary, config = eland_model(workdir, task)
        folder = write_eland_folder(workdir / f"eland-bf16-{task}", definition, vocabulary)
        batch = [["what is search", t] for t in TEXTS] if task == "text_similarity" else TEXTS
        check(task, load_eland_runtime(folder, config, prepack=False), load_eland_runtime(folder, config, prepack=False),
              batch)
    for fn in ("SPARSE_ENCODING", "TEXT_SIMILARITY"):
        zip_path, info = opensearch_archive(workdir, fn)
        folder = workdir / f"os-bf16-{fn.lower()}"
        safe_extract(zip_path, folder)
        doc = opensearch_model_doc(fn, info)
        batch = [("what is search", t) for t in TEXTS] if fn == "TEXT_SIMILARITY" else TEXTS
        check(fn, load_runtime(folder, doc, prepack=False), load_runtime(folder, doc, prepack=False), batch)
    assert {name for name, precision in taken.items() if precision == "bfloat16"} >= {
        "text_embedding", "text_expansion", "SPARSE_ENCODING"}, taken


@needs_bf16
def test_bfloat16_that_strays_too_far_is_packed_in_float32_instead(workdir, monkeypatch):
    zip_path, info = tiny_archive(workdir / "bf16-strict", "sentence_transformers")
    folder = workdir / "bf16-strict-model"
    safe_extract(zip_path, folder)
    plain = load_runtime(folder, model_doc(info), prepack=False)
    runtime = load_runtime(folder, model_doc(info), prepack=False)
    monkeypatch.setattr(prepack_module, "BF16_TOLERANCE", 0.0)  # no rounding at all allowed
    assert runtime.prepack("bfloat16") == 12 and runtime.prepacked_precision == "float32"
    assert all(node.inputsAt(1).toIValue().dtype == torch.float32 for node in runtime._module.graph.findAllNodes(LINEAR))
    np.testing.assert_allclose(runtime.embed(TEXTS), plain.embed(TEXTS), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        runtime.prepack("float16")


def test_bfloat16_agreement_is_relative_to_the_whole_output():
    reference = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    assert agrees(reference * 1.01, reference, "bfloat16")
    assert not agrees(reference * 1.05, reference, "bfloat16")
    assert not agrees(reference * 1.01, reference)  # float32 allows rounding only
    broken = reference.copy()
    broken[0, 0] = np.nan
    assert not agrees(broken, reference, "bfloat16")


def test_the_precision_setting_takes_float32_or_bfloat16_only():
    from mlcommons.errors import BadRequest
    from mlcommons.setting_table import SETTINGS

    setting = SETTINGS["mlcommons.deploy.linear_precision"]
    assert setting.default == "float32" and setting.dynamic
    assert setting.parse("bfloat16") == "bfloat16"
    with pytest.raises(BadRequest, match="must be one of \\[float32, bfloat16\\]"):
        setting.parse("float16")


@pytest.mark.parametrize("prepack", [True, False])
def test_a_deployment_packs_its_weights_before_it_serves_and_answers_the_same(workdir, redis_url, prepack):
    """A node loads without packing (the deploy does not wait for it); the deployment's preparing
    thread packs, then measures the pass cost its allocations plan with."""
    import msgpack
    import redis

    from mlcommons.core.serving import dataplane as dp
    from mlcommons.settings import Settings, static_values
    from mlcommons.store.keys import Keys
    from tests.harness import wait_for
    from workers.inference import DeploymentServer

    zip_path, info = tiny_archive(workdir / f"served-{prepack}")
    folder = workdir / f"served-{prepack}-model"
    safe_extract(zip_path, folder)
    runtime = load_runtime(folder, model_doc(info), prepack=False)
    plain = runtime.embed(TEXTS)
    client, keys = redis.Redis.from_url(redis_url), Keys(f"prepack{prepack}")
    server = DeploymentServer(client, keys, Settings(static_values(environ={})), "n", "d", runtime,
                              block_seconds=0.05, prepack=prepack)
    reply_key = keys.replies("test")
    server.start()
    try:
        assert server.prepared.wait(60)
        assert runtime.prepacked_linears == (12 if prepack else 0)
        assert server.overhead_tokens is not None
        client.rpush(keys.predict_queue("d"), msgpack.packb([1, reply_key, 0, dp.OP_TEXT_EMBEDDING, TEXTS, None]))
        wait_for(lambda: client.llen(reply_key) == 1, 60, 0.01, "the reply")
    finally:
        server.stop()
    reply = dp.decode_reply(client.lpop(reply_key))
    assert reply.status == dp.OK, reply
    served = np.frombuffer(reply.data, dtype=np.float32).reshape(len(TEXTS), -1)
    np.testing.assert_allclose(served, plain, rtol=1e-4, atol=1e-5)
    runtime.close()


def test_requests_are_served_while_the_deployment_prepares_and_a_closed_runtime_stays_closed(workdir, redis_url):
    """The allocations do not wait for the packing: a request sent at once is answered, with the
    same vectors whichever weights it ran on; and a runtime closed while it packs gets no module back."""
    import msgpack
    import redis

    from mlcommons.core.serving import dataplane as dp
    from mlcommons.settings import Settings, static_values
    from mlcommons.store.keys import Keys
    from tests.harness import wait_for
    from workers.inference import DeploymentServer

    zip_path, info = tiny_archive(workdir / "during")
    folder = workdir / "during-model"
    safe_extract(zip_path, folder)
    runtime = load_runtime(folder, model_doc(info), prepack=False)
    plain = runtime.embed(TEXTS)
    client, keys = redis.Redis.from_url(redis_url), Keys("prepack-during")
    server = DeploymentServer(client, keys, Settings(static_values(environ={})), "n", "d", runtime,
                              block_seconds=0.05, prepack=True)
    reply_key = keys.replies("test")
    for n in range(1, 21):
        client.rpush(keys.predict_queue("d"), msgpack.packb([n, reply_key, 0, dp.OP_TEXT_EMBEDDING, TEXTS, None]))
    server.start()
    try:
        wait_for(lambda: client.llen(reply_key) == 20, 60, 0.01, "20 replies")
        assert server.prepared.wait(60)
    finally:
        server.stop()
    for raw in client.lrange(reply_key, 0, -1):
        reply = dp.decode_reply(raw)
        assert reply.status == dp.OK, reply
        np.testing.assert_allclose(np.frombuffer(reply.data, dtype=np.float32).reshape(len(TEXTS), -1), plain,
                                   rtol=1e-4, atol=1e-5)
    runtime.close()

    closing = load_runtime(folder, model_doc(info), prepack=False)

    class ClosedWhilePacking(type(closing)):
        def forward(self, enc):
            if self is not closing:  # the probe checking the packed copy: close the runtime now
                closing.close()
            return super().forward(enc)

    closing.__class__ = ClosedWhilePacking
    assert closing.prepack() == 0, "the probe agreed, but the runtime was closed: nothing is swapped in"
    assert closing._module is None and closing.prepacked_linears == 0
