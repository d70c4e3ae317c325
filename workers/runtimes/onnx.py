"""Text embedding from an ML Commons ONNX archive: one ``*.onnx`` plus ``tokenizer.json``.

The graph is run by onnxruntime, optimised once at load (every graph optimisation level). An ONNX
file is a protobuf: nothing is unpickled. A model may keep its weights in "external data" files
named inside the graph; every such name is checked to stay inside the archive's folder before
onnxruntime opens anything.

The graph takes ``input_ids`` and ``attention_mask`` (and ``token_type_ids`` where it declares
it) and returns either sentence embeddings (2-d) or token embeddings (3-d), which are pooled here
with ``model_config.pooling_mode`` and normalised when ``normalize_result`` says so, as ML Commons
does for its ONNX text-embedding models.

Threads: with one thread per allocation every allocation thread runs the shared session in its
own thread (onnxruntime runs the graph in the caller when its intra-op pool has one thread, and a
session may be run from several threads at once). With more, each allocation thread gets a
session of its own with that many intra-op threads, so allocations never share a pool.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from mlcommons.errors import NodeError
from mlcommons.types import FunctionName, PoolingMode
from workers.runtimes.base import Encoded, Runtime, TokenizedByFile
from workers.runtimes.tokenizer import TextTokenizer
from workers.runtimes.torchscript import fallback_max_length, find_model_files, parse_pooling_mode

log = logging.getLogger(__name__)

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_SENTENCE_OUTPUTS = ("sentence_embedding", "sentence_embeddings", "pooler_output")
_TOKEN_OUTPUTS = ("token_embeddings", "last_hidden_state")


def check_external_data(graph_path: Path, root: Path) -> bool:
    """Every external-data file the graph names must be a plain file inside ``root``; returns
    whether it names any."""
    import onnx

    try:
        model = onnx.load(str(graph_path), load_external_data=False)
    except Exception as exc:
        raise NodeError(f"cannot read {graph_path.name} as ONNX: {exc}") from exc
    root = root.resolve()
    external = False
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        external = True
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (graph_path.parent / location).resolve()
        if (not location or Path(location).is_absolute() or ".." in Path(location).parts
                or not target.is_relative_to(root) or (graph_path.parent / location).is_symlink()
                or not target.is_file()):
            raise NodeError(f"the ONNX graph names external data outside the archive or missing: [{location}]")
    return external


def _tensors(graph):
    """Every tensor a graph holds, its subgraphs' included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def pool_numpy(tokens: np.ndarray, attention_mask: np.ndarray, mode: PoolingMode) -> np.ndarray:
    """Token embeddings (n, seq, dim) to sentence embeddings (n, dim), ignoring padding."""
    tokens = tokens.astype(np.float32, copy=False)
    if mode is PoolingMode.CLS:
        return tokens[:, 0]
    mask = attention_mask[:, :, None].astype(np.float32)
    if mode is PoolingMode.MAX:
        return np.where(mask > 0, tokens, -np.inf).max(axis=1)
    if mode is PoolingMode.WEIGHTED_MEAN:
        mask = mask * np.arange(1, tokens.shape[1] + 1, dtype=np.float32)[None, :, None]
    summed = np.einsum("nsd,nso->nd", tokens, mask)
    counts = np.maximum(mask.sum(axis=1), 1e-9)
    return summed / (np.sqrt(counts) if mode is PoolingMode.MEAN_SQRT_LEN else counts)


class OnnxTextEmbedding(TokenizedByFile, Runtime):

    function_name = FunctionName.TEXT_EMBEDDING

    def __init__(self, model_dir: Path, model_config: dict | None = None, *, device: str = "cpu"):
        import onnxruntime as ort

        self._ort = ort
        model_config = model_config or {}
        graph_path, tokenizer_path = find_model_files(Path(model_dir), ".onnx", "")
        external = check_external_data(graph_path, Path(model_dir))
        self._graph_path = graph_path
        # The node removes the extracted folder once the model is loaded, and an allocation makes
        # its own session when it starts (use_threads), maybe much later: a graph that holds its
        # weights is kept in memory for that (its size again); one with external data needs its
        # folder, which the node's model cache keeps.
        self._graph = None if external else graph_path.read_bytes()
        self.device = device
        self._pooling = parse_pooling_mode(model_config.get("pooling_mode"))
        self._normalize = str(model_config.get("normalize_result", "")).lower() == "true"
        try:
            self._tokenizer = TextTokenizer.from_file(tokenizer_path, max_length=fallback_max_length(model_config))
        except NodeError:
            raise
        except Exception as exc:
            raise NodeError(f"cannot read tokenizer.json: {exc}") from exc
        self._shared = self._session(1)
        self._local = threading.local()
        self._inputs = [i.name for i in self._shared.get_inputs()]
        unknown = [name for name in self._inputs if name not in _INPUTS]
        if unknown or "input_ids" not in self._inputs:
            raise NodeError(f"the ONNX graph takes inputs {self._inputs}; expected input_ids, attention_mask "
                            "and optionally token_type_ids")
        outputs = [o.name for o in self._shared.get_outputs()]
        self._output = next((n for n in (*_SENTENCE_OUTPUTS, *_TOKEN_OUTPUTS) if n in outputs), outputs[0])
        self._closed = False
        self.embedding_dimension = 0
        self.embedding_dimension = int(self.embed(["warm up"]).shape[1])

    def _session(self, threads: int):
        ort = self._ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle pool threads spinning for work would take cores from the other allocations.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if self.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            source = self._graph if self._graph is not None else str(self._graph_path)
            return ort.InferenceSession(source, sess_options=options, providers=providers)
        except Exception as exc:
            raise NodeError(f"onnxruntime cannot load {self._graph_path.name}: {exc}") from exc

    def use_threads(self, threads: int) -> None:
        """Called by each allocation thread with its thread count before it serves."""
        try:
            self._local.session = self._session(threads) if threads > 1 else None
        except NodeError as exc:  # the shared session (one thread) still serves
            log.warning("no session of %d threads for this allocation: %s", threads, exc)
            self._local.session = None

    def forward(self, enc: Encoded) -> np.ndarray:
        if self._closed:
            raise NodeError("the model runtime is closed")
        if len(enc) == 0:
            return np.zeros((0, self.embedding_dimension), dtype=np.float32)
        session = getattr(self._local, "session", None) or self._shared
        feed = {name: getattr(enc, name) for name in self._inputs}
        (out,) = session.run([self._output], feed)
        if out.ndim == 3:
            out = pool_numpy(out, enc.attention_mask, self._pooling)
        elif out.ndim != 2:
            raise NodeError(f"the ONNX graph returned a {out.ndim}-d output [{self._output}]")
        out = out.astype(np.float32, copy=False)
        if self._normalize:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(out)

    def close(self) -> None:
        self._closed = True
        self._shared = None
        self._graph = None
        self._local = threading.local()
