"""Reply shapes shared by the core services: the standard OpenSearch write responses and the
public view of a stored document (fields starting with ``_`` are internal)."""
from __future__ import annotations

from typing import Any

from mlcommons.keys import WIRE_INDEX


def public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def write_response(index: str, doc_id: str, result: str, version: int = 1) -> dict[str, Any]:
    """The body of an OpenSearch index/update/delete response."""
    return {
        "_index": WIRE_INDEX[index],
        "_id": doc_id,
        "_version": version,
        "result": result,
        "forced_refresh": True,
        "_shards": {"total": 1, "successful": 1, "failed": 0},
        "_seq_no": version - 1,
        "_primary_term": 1,
    }
