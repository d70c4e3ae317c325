"""ML Commons' built-in pre- and post-process functions for connectors, by name.

Pre-process functions turn a ``_predict``'s ``text_docs`` (or a rerank's query and documents) into
parameters for the action's request body; post-process functions turn the provider's reply into
ML Commons tensors (``sentence_embedding`` FLOAT32 vectors, ``similarity`` scores), reading it
with a JSONPath that the call's ``response_filter`` parameter may replace. Anything else named as
a function would be a Painless script in ML Commons, and is refused here with a clear 400.
"""
from __future__ import annotations

from typing import Any, Callable

import orjson

from mlcommons.core.remote import jsonpath
from mlcommons.core.remote.templates import escape_json
from mlcommons.errors import BadRequest

TEXT_DOCS_ONLY = ("This pre_process_function can only support TextDocsInputDataSet which including a list of "
                  "string with key 'text_docs'")
SIMILARITY_ONLY = "This pre_process_function can only support TextSimilarityInputDataSet"


def _texts_as(name: str) -> Callable:
    def pre(texts: list[str] | None, query: str | None) -> dict[str, str]:
        if texts is None or query is not None:
            raise BadRequest(TEXT_DOCS_ONLY)
        return {name: orjson.dumps(texts).decode()}
    return pre


def _first_text(texts: list[str] | None, query: str | None) -> dict[str, str]:
    if texts is None or query is not None:
        raise BadRequest(TEXT_DOCS_ONLY)
    return {"inputText": texts[0]}


def _rerank_in(texts: list[str] | None, query: str | None) -> dict[str, str]:
    if texts is None or query is None:
        raise BadRequest(SIMILARITY_ONLY)
    # the query goes inside a JSON string of the template ("${parameters.query}"): escaped, as
    # ML Commons escapes a string parameter
    return {"query": escape_json(query), "documents": orjson.dumps(texts).decode(), "top_n": str(len(texts))}


PRE_PROCESS: dict[str, Callable] = {
    "connector.pre_process.openai.embedding": _texts_as("input"),
    "connector.pre_process.default.embedding": _texts_as("input"),
    "connector.pre_process.cohere.embedding": _texts_as("texts"),
    "connector.pre_process.bedrock.embedding": _first_text,
    "connector.pre_process.cohere.rerank": _rerank_in,
    "connector.pre_process.default.rerank": _rerank_in,
}
# One request per document for these (ML Commons' chunking of text_docs).
ONE_PER_DOCUMENT = frozenset({"connector.pre_process.bedrock.embedding"})


def _refuse_script(kind: str, name: str, known) -> BadRequest:
    return BadRequest(f"[{kind}] [{name[:100]}] is not a built-in function; scripts (Painless) are not supported "
                      f"here. Use one of {sorted(known)}")


def preprocess(name: str | None, texts: list[str] | None, query: str | None = None) -> dict[str, str]:
    """The parameters a pre-process function makes (text_docs with none: the default embedding one)."""
    if name is None:
        return PRE_PROCESS["connector.pre_process.default.embedding"](texts, query) if texts is not None else {}
    function = PRE_PROCESS.get(name)
    if function is None:
        raise _refuse_script("pre_process_function", name, PRE_PROCESS)
    return function(texts, query)


# --- post-process ------------------------------------------------------------------------------

def _data_type(response_filter: str) -> str:
    lowered = response_filter.lower()
    for name in ("int8", "uint8", "binary", "ubinary"):
        if "." + name in lowered:
            return name.upper()
    return "FLOAT32"


def _vector(values: Any) -> list[float] | None:
    if not isinstance(values, list) or not values:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return values


def _embeddings(found: Any, data_type: str) -> list[dict]:
    if not isinstance(found, list):
        raise BadRequest("Post process function input is not a List.")
    if not found:
        raise BadRequest("The embedding should be a non-empty List containing List of Float values.")
    out = []
    for item in found:
        vector = _vector(item)
        if vector is None:
            raise BadRequest("The embedding should be a non-empty List containing List of Float values.")
        out.append({"name": "sentence_embedding", "data_type": data_type, "shape": [len(vector)], "data": vector})
    return out


def _single_embedding(found: Any, data_type: str) -> list[dict]:
    vector = _vector(found)
    if vector is None:
        raise BadRequest("The embedding should be a non-empty List containing Float values.")
    return [{"name": "sentence_embedding", "data_type": data_type, "shape": [len(vector)], "data": vector}]


def _rerank_out(found: Any, data_type: str) -> list[dict]:
    if not isinstance(found, list) or not all(isinstance(r, dict) for r in found):
        raise BadRequest("Post process function input is not a List of Map.")
    scores: dict[int, float] = {}
    for result in found:
        index, score = result.get("index"), result.get("relevance_score")
        if not isinstance(index, int) or not isinstance(score, (int, float)) or isinstance(index, bool) \
                or not 0 <= index < 1_000_000:
            raise BadRequest("The rerank result should contain index and relevance_score.")
        scores[index] = float(score)
    return [{"name": "similarity", "data_type": "FLOAT32", "shape": [1], "data": [scores[i]]} for i in sorted(scores)]


POST_PROCESS: dict[str, tuple[str, Callable]] = {
    "connector.post_process.openai.embedding": ("$.data[*].embedding", _embeddings),
    "connector.post_process.cohere.embedding": ("$.embeddings", _embeddings),
    "connector.post_process.default.embedding": ("$[*]", _embeddings),
    "connector.post_process.bedrock.embedding": ("$.embedding", _single_embedding),
    "connector.post_process.cohere.rerank": ("$.results", _rerank_out),
    "connector.post_process.default.rerank": ("$[*]", _rerank_out),
}


def postprocess(name: str | None, body: bytes | str, response_filter: str | None = None) -> list[dict]:
    """The output tensors of one reply: by the named function, or (none named) the reply itself
    as ``dataAsMap``, as ML Commons returns it."""
    if name is None:
        return [_as_map(body, response_filter)]
    entry = POST_PROCESS.get(name)
    if entry is None:
        raise _refuse_script("post_process_function", name, POST_PROCESS)
    default_filter, function = entry
    path = response_filter or default_filter
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("Can't run post process function as model output is null") from None
    if document is None:
        raise BadRequest("Can't run post process function as model output is null")
    try:
        found = jsonpath.read(document, path)
    except jsonpath.PathNotFound:
        raise BadRequest(f"The remote model's reply has nothing at [{path}]") from None
    return function(found, _data_type(path))


def _as_map(body: bytes | str, response_filter: str | None) -> dict:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        return {"name": "response", "dataAsMap": {"response": text}}
    if response_filter:
        try:
            document = jsonpath.read(document, response_filter)
        except jsonpath.PathNotFound:
            pass  # as ML Commons: the whole reply
    if isinstance(document, dict):
        return {"name": "response", "dataAsMap": document}
    return {"name": "response", "dataAsMap": {"response": document}}
