"""Linear layers on weights packed once, for TorchScript models on the CPU.

Measured (all-MiniLM-L6-v2 traced, one thread, thread CPU time): 80% of a one-document forward
is ``aten::addmm``, at about 35 GFLOP/s against 94 at 384 rows. MKL's sgemm packs the weight
matrix on every call, and for a batch of a few short texts the packing (42 MB of weights read and
written per forward) costs as much as the arithmetic. oneDNN's ``mkldnn::_linear_pointwise``
takes a weight packed once, ahead of time, into its own layout, and also runs an activation that
follows the linear in the same pass.

:func:`prepack_linears` freezes a copy of the module (its weights become constants of the
graph), rewrites every ``aten::linear`` into ``mkldnn::_linear_pointwise`` (a linear whose only
use is a ``gelu`` absorbs it), and gives those nodes their weights packed. A weight the graph also
uses elsewhere (a tied embedding, a ``matmul``) keeps its dense constant for those uses.

The runtimes adopt the copy only if it gives the same output as the module it came from on their
warm-up input (:class:`PrepackedLinears`): anything the rewrite does not understand stays as
it was. ``mlcommons.deploy.prepack_weights`` turns it off.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
import warnings

import numpy as np
import torch

log = logging.getLogger(__name__)

LINEAR = "mkldnn::_linear_pointwise"

_LINEAR_GELU = ("""
graph(%x, %w, %b, %approximate):
  %r = aten::linear(%x, %w, %b)
  %y = aten::gelu(%r, %approximate)
  return (%y)""", """
graph(%x, %w, %b, %approximate):
  %attr : str = prim::Constant[value="gelu"]()
  %scalars : Scalar?[] = prim::ListConstruct()
  %y = mkldnn::_linear_pointwise(%x, %w, %b, %attr, %scalars, %approximate)
  return (%y)""")

_LINEAR = ("""
graph(%x, %w, %b):
  %r = aten::linear(%x, %w, %b)
  return (%r)""", """
graph(%x, %w, %b):
  %attr : str = prim::Constant[value="none"]()
  %scalars : Scalar?[] = prim::ListConstruct()
  %algorithm : str = prim::Constant[value=""]()
  %r = mkldnn::_linear_pointwise(%x, %w, %b, %attr, %scalars, %algorithm)
  return (%r)""")


def available() -> bool:
    return torch.backends.mkldnn.is_available()


def prepack_linears(module: torch.jit.ScriptModule) -> tuple[torch.jit.ScriptModule, int] | None:
    """A frozen copy of ``module`` (in eval mode, on the CPU) whose linear layers run on packed
    weights, and how many were packed; None when there is no linear with a constant float32
    weight to pack. Raises what freezing or packing raises: the caller keeps ``module`` then."""
    frozen = torch.jit.freeze(module, optimize_numerics=False)
    graph = frozen.graph
    if not graph.findAllNodes("aten::linear"):
        return None
    for pattern, replacement in (_LINEAR_GELU, _LINEAR):
        torch._C._jit_pass_custom_pattern_based_rewrite_graph(pattern, replacement, graph)
    packed = 0
    for source in _weight_constants(graph):
        weight = source.output().toIValue()
        if not (isinstance(weight, torch.Tensor) and weight.dtype == torch.float32 and weight.dim() == 2
                and weight.device.type == "cpu" and not weight.is_mkldnn):
            continue
        uses = [u for u in source.output().uses() if u.user.kind() == LINEAR and u.offset == 1]
        constant = graph.create("prim::Constant")
        constant.t_("value", torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), None))
        constant.output().setType(torch._C.TensorType.get())
        constant.insertAfter(source)
        for use in uses:
            use.user.replaceInput(1, constant.output())
        if not source.output().uses():
            source.destroy()
        packed += len(uses)
    if packed == 0:
        return None
    torch._C._jit_pass_dce(graph)
    return frozen, packed


def _weight_constants(graph) -> list:
    """The constant nodes that feed a rewritten linear's weight, each once."""
    seen: dict[int, object] = {}
    for node in graph.findAllNodes(LINEAR):
        weight = node.inputsAt(1)
        if weight.node().kind() == "prim::Constant":
            seen.setdefault(weight.unique(), weight.node())
    return list(seen.values())


def agrees(candidate: np.ndarray, reference: np.ndarray) -> bool:
    """Whether the packed module's output is the original's up to float32 reassociation."""
    if candidate.shape != reference.shape or candidate.dtype != reference.dtype:
        return False
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    return bool(np.allclose(candidate, reference, rtol=1e-3, atol=1e-4 * max(1.0, scale)))


class PrepackedLinears:
    """For a runtime that keeps its TorchScript module in ``self._module`` and its warm-up input
    and output in ``self._warm_sample`` / ``self._warm_output``: :meth:`prepack` swaps the module
    for its packed copy when that copy gives the same output. It may run while other threads
    serve: the copy is checked on a probe (a shallow copy of the runtime holding it), and the
    swap is one assignment, skipped if the runtime was closed meanwhile (:meth:`_drop_module`)."""

    _module: torch.jit.ScriptModule | None
    device: str
    _warm_sample: object = None
    _warm_output: np.ndarray | None = None
    prepacked_linears = 0
    _swap = threading.Lock()  # one for all runtimes: held for an assignment

    def prepack(self) -> int:
        """Run the linear layers on packed weights, if that keeps the output; how many were packed."""
        module, sample, reference = self._module, self._warm_sample, self._warm_output
        if module is None or sample is None or reference is None or self.device != "cpu" or not available():
            return 0
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():  # torch.jit.freeze warns that TorchScript is deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                made = prepack_linears(module)
        except Exception as exc:  # a graph freezing or the rewrite cannot take: serve it as it is
            log.info("linear layers left unpacked: %s", _reason(exc))
            return 0
        if made is None:
            return 0
        candidate, packed = made
        probe = copy.copy(self)
        probe._module = candidate
        try:
            out = probe.forward(sample)  # type: ignore[attr-defined]
        except Exception as exc:
            out, reason = None, _reason(exc)
        else:
            reason = "its output differs from the unpacked module's"
        if out is None or not agrees(out, reference):
            log.warning("linear layers left unpacked: %s", reason)
            return 0
        with self._swap:
            if self._module is not module:  # closed while we packed
                return 0
            self._module = candidate
            self.prepacked_linears = packed
        log.info("%d linear layers run on packed weights (%.0f ms to pack and check)", packed,
                 (time.perf_counter() - started) * 1000)
        return packed

    def _drop_module(self) -> None:
        """What ``close`` does: no module, and none swapped in after."""
        with self._swap:
            self._module = None


def _reason(exc: BaseException) -> str:
    """An exception in one line: TorchScript's end with the real message, after its traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__
