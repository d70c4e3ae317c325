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

With ``precision="bfloat16"`` (``mlcommons.deploy.linear_precision``, opt-in, on a CPU that
multiplies bfloat16 natively) the packed weights are bfloat16 and each linear's input is rounded
to bfloat16 before it and its output widened to float32 after it; everything between the linears
(attention's softmax, layer norms, residual sums, pooling) stays float32. oneDNN's bfloat16
kernels accumulate in float32 and run about twice as fast as its float32 ones on such a CPU. The
copy is adopted where the warm-up output stays within :data:`BF16_TOLERANCE` (relative, as a
whole); otherwise the float32 packing is tried.
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


# bfloat16: the linear's input rounded to it (dtype 15), its output widened to float32 (dtype 6).
_NARROW = """
  %low : int = prim::Constant[value=15]()
  %full : int = prim::Constant[value=6]()
  %no : bool = prim::Constant[value=0]()
  %none : NoneType = prim::Constant()
  %x_low = aten::to(%x, %low, %no, %no, %none)"""

_LINEAR_GELU_BF16 = (_LINEAR_GELU[0], """
graph(%x, %w, %b, %approximate):
  %attr : str = prim::Constant[value="gelu"]()
  %scalars : Scalar?[] = prim::ListConstruct()""" + _NARROW + """
  %y_low = mkldnn::_linear_pointwise(%x_low, %w, %b, %attr, %scalars, %approximate)
  %y = aten::to(%y_low, %full, %no, %no, %none)
  return (%y)""")

_LINEAR_BF16 = (_LINEAR[0], """
graph(%x, %w, %b):
  %attr : str = prim::Constant[value="none"]()
  %scalars : Scalar?[] = prim::ListConstruct()
  %algorithm : str = prim::Constant[value=""]()""" + _NARROW + """
  %r_low = mkldnn::_linear_pointwise(%x_low, %w, %b, %attr, %scalars, %algorithm)
  %r = aten::to(%r_low, %full, %no, %no, %none)
  return (%r)""")

FLOAT32, BFLOAT16 = "float32", "bfloat16"
PRECISIONS = (FLOAT32, BFLOAT16)
BF16_TOLERANCE = 0.02  # |packed - float32| / |float32| (Frobenius) on the warm-up output; MiniLM: 0.006


def available() -> bool:
    return torch.backends.mkldnn.is_available()


def bf16_available() -> bool:
    """Whether oneDNN multiplies bfloat16 natively here (avx512_bf16, AMX); emulated it is slower."""
    try:
        return available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def prepack_linears(module: torch.jit.ScriptModule,
                    precision: str = FLOAT32) -> tuple[torch.jit.ScriptModule, int] | None:
    """A frozen copy of ``module`` (in eval mode, on the CPU) whose linear layers run on packed
    weights (of ``precision``: float32, or bfloat16 with each linear's input rounded to it), and
    how many were packed; None when there is no linear with a constant float32 weight to pack.
    Raises what freezing or packing raises: the caller keeps ``module`` then."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision [{precision}]")
    frozen = torch.jit.freeze(module, optimize_numerics=False)
    graph = frozen.graph
    if not graph.findAllNodes("aten::linear"):
        return None
    rewrites = (_LINEAR_GELU_BF16, _LINEAR_BF16) if precision == BFLOAT16 else (_LINEAR_GELU, _LINEAR)
    for pattern, replacement in rewrites:
        torch._C._jit_pass_custom_pattern_based_rewrite_graph(pattern, replacement, graph)
    dtype = torch.bfloat16 if precision == BFLOAT16 else torch.float32
    packed = 0
    for source in _weight_constants(graph):
        weight = source.output().toIValue()
        if not (isinstance(weight, torch.Tensor) and weight.dtype == torch.float32 and weight.dim() == 2
                and weight.device.type == "cpu" and not weight.is_mkldnn):
            continue
        uses = [u for u in source.output().uses() if u.user.kind() == LINEAR and u.offset == 1]
        constant = graph.create("prim::Constant")
        constant.t_("value", torch.ops.mkldnn._reorder_linear_weight(weight.contiguous().to(dtype), None))
        constant.output().setType(torch._C.TensorType.get())
        constant.insertAfter(source)
        for use in uses:
            use.user.replaceInput(1, constant.output())
        if not source.output().uses():
            source.destroy()
        packed += len(uses)
    if packed == 0:
        return None
    if precision == BFLOAT16:
        # Every rewritten linear needs its packed bfloat16 weight: one whose weight the graph
        # computes (no constant) would meet a bfloat16 input with a float32 weight, so such a
        # graph is not narrowed at all (the caller packs it in float32 instead).
        if any(node.inputsAt(1).node().kind() != "prim::Constant" or not _is_packed(node.inputsAt(1))
               for node in graph.findAllNodes(LINEAR)):
            return None
        torch._C._jit_pass_cse(graph)  # Q, K and V round the same input once
        _skip_round_trips(graph)
    torch._C._jit_pass_dce(graph)
    return frozen, packed


def _skip_round_trips(graph) -> None:
    """A linear whose bfloat16 output is widened only to be rounded again for the next linear (the
    intermediate layer into the output layer): the next one takes the bfloat16 output itself, as
    rounding a widened bfloat16 gives it back bit for bit."""
    for narrow in graph.findAllNodes("aten::to"):
        widen = narrow.inputsAt(0).node()
        if (_dtype_of(narrow) == torch.bfloat16 and widen.kind() == "aten::to"
                and _dtype_of(widen) == torch.float32 and widen.inputsAt(0).node().kind() == LINEAR):
            narrow.output().replaceAllUsesWith(widen.inputsAt(0))


def _dtype_of(cast) -> torch.dtype | None:
    """The dtype an ``aten::to(x, dtype, ...)`` casts to, where it is a constant."""
    arg = cast.inputsAt(1)
    if arg.node().kind() != "prim::Constant" or not isinstance(value := arg.toIValue(), int):
        return None
    return {15: torch.bfloat16, 6: torch.float32}.get(value)


def _is_packed(value) -> bool:
    tensor = value.toIValue()
    return isinstance(tensor, torch.Tensor) and tensor.is_mkldnn


def _weight_constants(graph) -> list:
    """The constant nodes that feed a rewritten linear's weight, each once."""
    seen: dict[int, object] = {}
    for node in graph.findAllNodes(LINEAR):
        weight = node.inputsAt(1)
        if weight.node().kind() == "prim::Constant":
            seen.setdefault(weight.unique(), weight.node())
    return list(seen.values())


def agrees(candidate: np.ndarray, reference: np.ndarray, precision: str = FLOAT32) -> bool:
    """Whether the packed module's output is the original's: up to float32 reassociation, or
    for bfloat16 within :data:`BF16_TOLERANCE` of it as a whole."""
    if candidate.shape != reference.shape or candidate.dtype != reference.dtype:
        return False
    if not np.all(np.isfinite(candidate)):
        return False
    if precision == BFLOAT16:
        norm = float(np.linalg.norm(reference))
        return bool(float(np.linalg.norm(candidate - reference)) <= BF16_TOLERANCE * max(norm, 1e-12))
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

    def prepack(self, precision: str = FLOAT32) -> int:
        """Run the linear layers on packed weights, if that keeps the output; how many were packed.
        ``precision="bfloat16"`` narrows them where this CPU multiplies bfloat16 natively and the
        output stays within :data:`BF16_TOLERANCE`; else they are packed in float32."""
        module, sample, reference = self._module, self._warm_sample, self._warm_output
        if module is None or sample is None or reference is None or self.device != "cpu" or not available():
            return 0
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision [{precision}]")
        attempts = [FLOAT32]
        if precision == BFLOAT16:
            if bf16_available():
                attempts.insert(0, BFLOAT16)
            else:
                log.warning("linear layers packed in float32: this CPU has no native bfloat16 (avx512_bf16, AMX)")
        started = time.perf_counter()
        for attempt in attempts:
            candidate, packed = self._packed_copy(module, sample, reference, attempt)
            if candidate is None:
                continue
            with self._swap:
                if self._module is not module:  # closed while we packed
                    return 0
                self._module = candidate
                self.prepacked_linears = packed
                self.prepacked_precision = attempt
            log.info("%d linear layers run on packed %s weights (%.0f ms to pack and check)", packed, attempt,
                     (time.perf_counter() - started) * 1000)
            return packed
        return 0

    def _packed_copy(self, module, sample, reference, precision: str) -> tuple[torch.jit.ScriptModule | None, int]:
        """The packed copy of ``module`` and its count of packed linears, checked on a probe (a
        shallow copy of this runtime holding it); (None, 0) where it cannot be made or disagrees."""
        try:
            with warnings.catch_warnings():  # torch.jit.freeze warns that TorchScript is deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                made = prepack_linears(module, precision)
        except Exception as exc:  # a graph freezing or the rewrite cannot take: serve it as it is
            log.info("linear layers left unpacked in %s: %s", precision, _reason(exc))
            return None, 0
        if made is None:
            return None, 0
        candidate, packed = made
        probe = copy.copy(self)
        probe._module = candidate
        try:
            out = probe.forward(sample)  # type: ignore[attr-defined]
        except Exception as exc:
            out, reason = None, _reason(exc)
        else:
            reason = "its output differs from the unpacked module's"
        if out is None or not agrees(out, reference, precision):
            log.warning("linear layers left unpacked in %s: %s", precision, reason)
            return None, 0
        return candidate, packed

    def _drop_module(self) -> None:
        """What ``close`` does: no module, and none swapped in after."""
        with self._swap:
            self._module = None


def _reason(exc: BaseException) -> str:
    """An exception in one line: TorchScript's end with the real message, after its traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__
