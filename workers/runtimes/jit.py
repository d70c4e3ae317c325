"""What the TorchScript runtimes share: loading a module safely, reading an archive's
``tokenizer.json``, and running a tokenized batch on the model's device.

``torch.jit.load`` restores TorchScript code and tensors with its own restricted unpickler; it never
imports Python globals. Before calling it we still check that the file *is* a TorchScript archive
(a zip with ``code/`` and ``constants.pkl`` under one root folder), so that a pickle, a
``torch.save`` checkpoint or anything else is refused with a clear message instead of an opaque
reader error; nothing here calls ``torch.load`` or ``pickle``.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from mlcommons.errors import NodeError
from workers.runtimes.base import Encoded, Runtime
from workers.runtimes.prepack import PrepackedLinears
from workers.runtimes.tokenizer import TextTokenizer
from workers.runtimes.torchscript import _calling_convention, _last_line, fallback_max_length

WARM_UP_TEXT = "warm up"


def check_torchscript_archive(path: Path) -> None:
    """Raise :class:`NodeError` unless ``path`` looks like a file written by ``torch.jit.save``."""
    path = Path(path)
    if not path.is_file() or path.is_symlink():
        raise NodeError(f"{path.name} is missing or not a regular file")
    if not zipfile.is_zipfile(path):
        raise NodeError(
            f"{path.name} is not a TorchScript archive (not a zip file; a pickle or a legacy "
            "torch.save file?); only TorchScript models saved with torch.jit.save are loaded"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise NodeError(f"{path.name} is not a readable zip archive: {exc}") from exc
    roots = {n.split("/", 1)[0] for n in names if "/" in n}
    if not any(f"{r}/constants.pkl" in names and any(n.startswith(f"{r}/code/") for n in names) for r in roots):
        raise NodeError(
            f"{path.name} is not a TorchScript archive (no code/ and constants.pkl; a torch.save "
            "checkpoint?); only TorchScript models saved with torch.jit.save are loaded"
        )


def read_tokenizer_json(path: Path, model_config: dict) -> tuple[Tokenizer, TextTokenizer]:
    """The raw tokenizer (for its vocabulary) and a batching :class:`TextTokenizer` over a copy;
    truncation falls back on the model config when the file sets none."""
    try:
        raw = Tokenizer.from_file(str(path))
        return raw, TextTokenizer(Tokenizer.from_str(raw.to_str()), max_length=fallback_max_length(model_config))
    except NodeError:
        raise
    except Exception as exc:
        raise NodeError(f"cannot read tokenizer.json: {exc}") from exc


def load_torchscript(path: Path, device: str) -> torch.jit.ScriptModule:
    """The TorchScript module at ``path`` on ``device``, in eval mode."""
    check_torchscript_archive(path)
    try:
        module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        raise NodeError(f"cannot load {Path(path).name} as TorchScript: {_last_line(exc)}") from exc
    module.eval()
    return module


def unsupported_output(detail: str) -> NodeError:
    """The error for a module whose output is not what its function needs (e.g. a text-embedding
    archive registered as SPARSE_ENCODING)."""
    return NodeError(f"unsupported model output: the model returned {detail}")


def first_tensor(out, keys: tuple[str, ...] = ()) -> torch.Tensor:
    """The tensor a traced module returned: itself, the first of a tuple, or a dict's value under
    the first of ``keys`` present (a dict without them is another kind of model)."""
    if isinstance(out, dict):
        key = next((k for k in keys if k in out), None)
        if key is None:
            raise unsupported_output(f"a dict without any of {list(keys)} (keys: {sorted(out)})")
        out = out[key]
    elif isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise unsupported_output(f"{type(out).__name__}, not a tensor")
    return out


class TorchRuntime(PrepackedLinears, Runtime):
    """A runtime over one TorchScript module: loads it on ``device`` and runs tokenized batches
    under ``torch.inference_mode``. Subclasses tokenize and shape the output."""

    def __init__(self, pt_path: Path, *, device: str = "cpu"):
        self.device = str(torch.device(device))
        self._module: torch.jit.ScriptModule | None = load_torchscript(Path(pt_path), self.device)
        self._invoke = _calling_convention(self._module)

    def _run(self, enc: Encoded, convert) -> np.ndarray:
        """``convert(raw_output, attention_mask)`` -> tensor, returned as float32 numpy on the CPU."""
        module = self._module
        if module is None:
            raise NodeError("the model runtime is closed")
        with torch.inference_mode():
            inputs = {
                "input_ids": torch.from_numpy(enc.input_ids).to(self.device),
                "attention_mask": torch.from_numpy(enc.attention_mask).to(self.device),
                "token_type_ids": torch.from_numpy(enc.token_type_ids).to(self.device),
            }
            out = convert(self._invoke(module, inputs), inputs["attention_mask"])
            return np.ascontiguousarray(out.to("cpu", torch.float32).numpy())

    def _warm_up(self, sample: Encoded) -> np.ndarray:
        """One tiny forward: proves the calling convention and the output shape, warms the JIT."""
        try:
            out = self.forward(sample)
        except NodeError:
            raise
        except Exception as exc:
            raise NodeError(f"the model failed on a warm-up input: {_last_line(exc)}") from exc
        self._warm_sample, self._warm_output = sample, out
        return out

    def close(self) -> None:
        self._drop_module()
