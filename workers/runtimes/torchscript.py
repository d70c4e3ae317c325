"""Text embedding from an ML Commons TorchScript archive: one ``*.pt`` plus ``tokenizer.json``.

The module is loaded with ``torch.jit.load``, TorchScript's own loader, which restores only
TorchScript code and tensors; nothing here calls ``torch.load`` or unpickles Python objects.

Archives in the wild come from three tracers, told apart by ``module.forward.schema``:

- opensearch-py-ml traces a whole SentenceTransformer: one ``Dict(str, Tensor)`` argument and a
  dict result holding ``sentence_embedding`` (pooling and normalisation are inside the graph).
- Eland traces ``forward(input_ids, attention_mask, token_type_ids, position_ids)``.
- Users of ML Commons trace a bare Hugging Face model as ``forward(input_ids, attention_mask)``;
  it returns token embeddings that we pool here with ``model_config.pooling_mode``.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mlcommons.errors import NodeError
from mlcommons.types import FunctionName, PoolingMode
from workers.runtimes.base import Encoded, Runtime, TokenizedByFile
from workers.runtimes.prepack import PrepackedLinears
from workers.runtimes.tokenizer import DEFAULT_MAX_LENGTH, TextTokenizer

log = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
# Model families whose position ids start after the padding index, so two of their
# ``max_position_embeddings`` slots can never hold a token.
_OFFSET_POSITION_FAMILIES = frozenset(
    {"roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text", "ibert"}
)
_TOKEN_KEYS = ("token_embeddings", "last_hidden_state")
_WARM_UP_TEXT = "warm up"


def find_model_files(model_dir: Path, suffix: str = ".pt", kind: str = "TorchScript ") -> tuple[Path, Path]:
    """The single ``*<suffix>`` graph (top level or one folder down) and the ``tokenizer.json``
    beside it; ``kind`` names the graph in the error for an archive without one."""
    model_dir = Path(model_dir)
    candidates = sorted(
        p
        for pattern in (f"*{suffix}", f"*/*{suffix}")
        for p in model_dir.glob(pattern)
        if p.is_file() and not p.is_symlink()
    )
    if not candidates:
        raise NodeError(f"no {kind}{suffix} file in the model archive ({model_dir.name})")
    if len(candidates) > 1:
        names = ", ".join(str(p.relative_to(model_dir)) for p in candidates)
        raise NodeError(f"the model archive holds more than one {suffix} file: {names}")
    graph = candidates[0]
    for tokenizer in (graph.parent / "tokenizer.json", model_dir / "tokenizer.json"):
        if tokenizer.is_file() and not tokenizer.is_symlink():
            return graph, tokenizer
    raise NodeError("no tokenizer.json in the model archive")


def parse_pooling_mode(value: str | None) -> PoolingMode:
    if value is None or value == "":
        return PoolingMode.MEAN
    try:
        return PoolingMode(str(value).strip().upper())
    except ValueError:
        allowed = ", ".join(m.value for m in PoolingMode)
        raise NodeError(f"unknown pooling_mode {value!r}; expected one of {allowed}") from None


def pool(tokens: torch.Tensor, attention_mask: torch.Tensor, mode: PoolingMode) -> torch.Tensor:
    """Token embeddings (n, seq, dim) to sentence embeddings (n, dim), ignoring padding."""
    tokens = tokens.float()
    if mode is PoolingMode.CLS:
        return tokens[:, 0]
    mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
    if mode is PoolingMode.MAX:
        return tokens.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    if mode is PoolingMode.WEIGHTED_MEAN:
        positions = torch.arange(1, tokens.shape[1] + 1, device=tokens.device, dtype=tokens.dtype)
        mask = mask * positions.view(1, -1, 1)
    summed = (tokens * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    if mode is PoolingMode.MEAN_SQRT_LEN:
        return summed / counts.sqrt()
    return summed / counts


def fallback_max_length(model_config: dict) -> int:
    """Truncation length when tokenizer.json sets none: model_max_length, else the HF config's
    position table, else 512."""
    if model_config.get("model_max_length"):
        return int(model_config["model_max_length"])
    config = model_config.get("all_config")
    if isinstance(config, str) and config.strip():
        try:
            config = json.loads(config)
        except ValueError:
            raise NodeError("model_config.all_config is not valid JSON") from None
    if isinstance(config, dict):
        return usable_positions(config) or DEFAULT_MAX_LENGTH
    return DEFAULT_MAX_LENGTH


def usable_positions(hf_config: dict) -> int | None:
    """How many tokens the model's position table can hold, from a Hugging Face config dict."""
    limit = hf_config.get("max_position_embeddings")
    if not isinstance(limit, int) or limit <= 0:
        return None
    return limit - 2 if hf_config.get("model_type") in _OFFSET_POSITION_FAMILIES else limit


class TorchScriptTextEmbedding(PrepackedLinears, TokenizedByFile, Runtime):
    """A TorchScript text-embedding model and its tokenizer, ready to embed batches."""

    function_name = FunctionName.TEXT_EMBEDDING

    def __init__(self, model_dir: Path, model_config: dict | None = None, *, device: str = "cpu"):
        model_config = model_config or {}
        pt_path, tokenizer_path = find_model_files(Path(model_dir))
        self.device = str(torch.device(device))
        self._pooling = parse_pooling_mode(model_config.get("pooling_mode"))
        self._normalize = _truthy(model_config.get("normalize_result"))
        try:
            self._tokenizer = TextTokenizer.from_file(
                tokenizer_path, max_length=fallback_max_length(model_config)
            )
        except NodeError:
            raise
        except Exception as exc:
            raise NodeError(f"cannot read tokenizer.json: {exc}") from exc
        try:
            module = torch.jit.load(str(pt_path), map_location=self.device)
        except Exception as exc:
            raise NodeError(f"cannot load {pt_path.name} as TorchScript: {exc}") from exc
        module.eval()
        self._module: torch.jit.ScriptModule | None = module
        self._invoke = _calling_convention(module)
        self.embedding_dimension = 0
        warm = self._warm_up()
        self.embedding_dimension = int(warm.shape[1])

    # -- Runtime ----------------------------------------------------------------------------

    def forward(self, enc: Encoded) -> np.ndarray:
        module = self._module
        if module is None:
            raise NodeError("the model runtime is closed")
        if len(enc) == 0:
            return np.zeros((0, self.embedding_dimension), dtype=np.float32)
        with torch.inference_mode():
            inputs = {
                "input_ids": torch.from_numpy(enc.input_ids).to(self.device),
                "attention_mask": torch.from_numpy(enc.attention_mask).to(self.device),
                "token_type_ids": torch.from_numpy(enc.token_type_ids).to(self.device),
            }
            out = self._invoke(module, inputs)
            emb = self._to_embedding(out, inputs["attention_mask"])
            if self._normalize:
                emb = F.normalize(emb, p=2.0, dim=-1)
            return np.ascontiguousarray(emb.to("cpu", torch.float32).numpy())

    def close(self) -> None:
        # ``_invoke`` holds no tensors; keeping it lets a racing forward fail cleanly above.
        self._drop_module()

    # -- internals ---------------------------------------------------------------------------

    def _to_embedding(self, out, attention_mask: torch.Tensor) -> torch.Tensor:
        if isinstance(out, dict):
            if "sentence_embedding" in out:
                out = out["sentence_embedding"]
            else:
                key = next((k for k in _TOKEN_KEYS if k in out), None)
                if key is None:
                    raise NodeError(
                        "the model returned a dict without sentence_embedding, token_embeddings "
                        f"or last_hidden_state (keys: {sorted(out)})"
                    )
                out = out[key]
        elif isinstance(out, (tuple, list)) and out:
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise NodeError(f"the model returned {type(out).__name__}, not a tensor")
        if out.dim() == 3:
            return pool(out, attention_mask, self._pooling)
        if out.dim() == 2:
            return out.float()
        raise NodeError(f"the model returned a tensor of shape {tuple(out.shape)}; expected 2-D or 3-D")

    def _warm_up(self) -> np.ndarray:
        """One tiny forward: proves the calling convention and output shape, warms the JIT."""
        sample = self.tokenize([_WARM_UP_TEXT])
        try:
            out = self.forward(sample)
        except NodeError:
            raise
        except Exception as exc:
            raise NodeError(f"the model failed on a warm-up input: {_last_line(exc)}") from exc
        if out.ndim != 2 or out.shape[0] != 1 or out.shape[1] == 0:
            raise NodeError(f"the model returned shape {out.shape} for one text")
        self._warm_sample, self._warm_output = sample, out
        return out


Invoke = Callable[[torch.jit.ScriptModule, dict[str, torch.Tensor]], object]


def _calling_convention(module: torch.jit.ScriptModule) -> Invoke:
    """How to call ``module``, read from its forward schema."""
    try:
        arguments = list(module.forward.schema.arguments)[1:]  # drop self
    except (AttributeError, RuntimeError) as exc:
        raise NodeError(f"the TorchScript module has no readable forward schema: {exc}") from exc
    if len(arguments) == 1 and _is_str_tensor_dict(arguments[0].type):
        keys = ["input_ids", "attention_mask"]
        if _graph_reads(module, "token_type_ids"):
            keys.append("token_type_ids")
        return lambda m, inputs: m({k: inputs[k] for k in keys})

    if not arguments or any(a.type.kind() != "TensorType" for a in arguments):
        signature = ", ".join(f"{a.name}: {a.type}" for a in arguments)
        raise NodeError(f"unsupported TorchScript forward signature: forward({signature})")
    names = [a.name.split(".")[0] for a in arguments]
    if not set(names) <= set(INPUT_NAMES) or len(set(names)) != len(names):
        if len(names) > len(INPUT_NAMES):
            raise NodeError(f"unsupported TorchScript forward arguments: {', '.join(names)}")
        # Names lost or unusual (e.g. a traced function): fall back on Hugging Face's order.
        fallback = list(INPUT_NAMES[: len(names)])
        log.warning("unrecognised TorchScript forward arguments %s; passing %s", names, fallback)
        names = fallback

    def invoke(m, inputs):
        if "position_ids" in names:
            ids = inputs["input_ids"]
            inputs = dict(inputs)
            inputs["position_ids"] = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        return m(*(inputs[n] for n in names))

    return invoke


def _is_str_tensor_dict(t) -> bool:
    return (
        t.kind() == "DictType"
        and t.getKeyType().kind() == "StringType"
        and t.getValueType().kind() == "TensorType"
    )


def _graph_reads(module: torch.jit.ScriptModule, key: str) -> bool:
    """Whether the graph mentions the string constant ``key`` (e.g. reads it from its input dict)."""
    needle = f'value="{key}"'
    return needle in str(module.graph) or needle in str(module.inlined_graph)


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _last_line(exc: BaseException) -> str:
    """TorchScript errors end with the real message, after a long interpreter traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
