"""The data plane's wire format, shared by the API (producer, core/serving/predict.py) and the
workers (consumers, workers/inference.py): named shapes, each encoded and decoded only here.

A predict request (``Request``) is a msgpack array pushed onto its deployment's Redis list:
    [request_id, reply_key, deadline_ms, op, payload, options]
(``payload``: the texts, or ``[query, texts]`` for text_similarity), and its reply, pushed onto
the API process's reply list:
    ``Vectors``  text_embedding, text_similarity:  [request_id, OK, rows, dim, float32_bytes]
                 (``TracedVectors``: the same and [taken, forward, forwarded] when the request's
                 options ask for ``trace``; core/serving/timing.py)
    ``Sparse``   sparse:                           [request_id, OK, [{token: weight}, ...]]
    ``Document`` remote:                           [request_id, OK, json_bytes]  (the whole reply)
    ``Failure``  any failure:                      [request_id, ERROR, status, message]
Vectors travel as raw little-endian float32, never as lists of Python floats. The shapes are
NamedTuples: msgpack packs them as the arrays above, so the wire stays positional and compact.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Union

import msgpack

OK = 0
ERROR = 1

OP_TEXT_EMBEDDING = "text_embedding"
OP_TEXT_SIMILARITY = "text_similarity"
OP_SPARSE = "sparse"
OP_REMOTE = "remote"  # payload: {"parameters": {...}, "text_docs": [...] | None}


class Request(NamedTuple):
    request_id: int
    reply_key: str
    deadline_ms: int  # 0: none
    op: str
    payload: Any      # list[str], or [query, list[str]] for text_similarity
    options: Any = None

    @property
    def texts(self) -> list[str]:
        if self.op == OP_REMOTE:
            return self.payload.get("text_docs") or []
        return self.payload[1] if self.op == OP_TEXT_SIMILARITY else self.payload


class Vectors(NamedTuple):
    request_id: int
    status: int  # OK
    rows: int
    dim: int
    data: bytes  # float32, row-major


class TracedVectors(NamedTuple):
    """``Vectors`` with the worker's timestamps (core/serving/timing.py), for a request that asked."""
    request_id: int
    status: int  # OK
    rows: int
    dim: int
    data: bytes
    trace: list  # [taken, forward began, forward ended], microseconds


class Sparse(NamedTuple):
    request_id: int
    status: int  # OK
    maps: list   # {token: weight} per text


class Document(NamedTuple):
    request_id: int
    status: int  # OK
    body: bytes  # a remote model's reply, already as the client will read it (JSON)


class Failure(NamedTuple):
    request_id: int
    status: int  # ERROR
    code: int    # the HTTP status to answer with
    message: str


Reply = Union[Vectors, TracedVectors, Sparse, Document, Failure]


def encode(message: NamedTuple) -> bytes:
    return msgpack.packb(message)


def decode_request(raw: bytes) -> Request:
    return Request(*msgpack.unpackb(raw))


def decode_reply(raw: bytes) -> Reply:
    items = msgpack.unpackb(raw)
    if items[1] != OK:
        return Failure(*items)
    if len(items) == 5:
        return Vectors(*items)
    if len(items) == 6:
        return TracedVectors(*items)
    return Document(*items) if isinstance(items[2], bytes) else Sparse(*items)

# Admission: a request enters the deployment's queue only while someone serves it and the queue
# holds fewer than its capacity; one script, so the check and the push are one atomic step.
# Returns 1 accepted, 0 no route (never deployed or undeployed), -1 no worker, -2 queue full
# (counted in the route's ``rejected`` field for the stats APIs). ARGV[2] == '1' marks a
# high-priority request (Elasticsearch's search-time inference): it goes to the head of the queue
# and is not held to the capacity. The capacity is the deployment's own (the route's ``capacity``,
# an Elasticsearch ``queue_capacity``) or else ARGV[3], the API's current setting, so that a
# change of ``mlcommons.predict.queue_capacity`` holds for deployments already running.
ADMIT_SCRIPT = """
local route = redis.call('HMGET', KEYS[1], 'workers', 'capacity')
if not route[1] then return 0 end
if tonumber(route[1]) <= 0 then return -1 end
if ARGV[2] == '1' then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
if redis.call('LLEN', KEYS[2]) >= (tonumber(route[2]) or tonumber(ARGV[3])) then
  redis.call('HINCRBY', KEYS[1], 'rejected', 1)
  return -2
end
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
"""

# Take up to ARGV[1] requests off a queue, recording them in the taker's in-flight list so that
# they can be handed to another node if this one dies mid-batch.
TAKE_SCRIPT = """
local items = redis.call('LPOP', KEYS[1], ARGV[1])
if not items then return {} end
redis.call('RPUSH', KEYS[2], unpack(items))
return items
"""


REPLY_TTL_SECONDS = 300


def push_replies(client, replies: dict, done: str | None = None) -> None:
    """Send packed replies to each waiting API process's list (reply key -> [packed]), in one
    round trip; the lists expire if their API process is gone. ``done``: an in-flight list to
    delete in the same round trip, now that its requests are answered."""
    if not replies and done is None:
        return
    pipe = client.pipeline(transaction=False)
    for key, packed in replies.items():
        pipe.rpush(key, *packed)
        pipe.expire(key, REPLY_TTL_SECONDS)
    if done is not None:
        pipe.delete(done)
    pipe.execute()


def fail_requests(client, raw_requests, status: int, message: str) -> int:
    """Answer raw queued requests with an error at once (rather than at their deadline)."""
    replies: dict = {}
    for raw in raw_requests:
        req = decode_request(raw)
        replies.setdefault(req.reply_key, []).append(encode(Failure(req.request_id, ERROR, status, message)))
    push_replies(client, replies)
    return len(raw_requests)


def drain_with_error(client, queue_key: str, status: int, message: str) -> int:
    """Fail every request still in a deployment's queue (nobody is left to serve it)."""
    failed = 0
    while True:
        items = client.lpop(queue_key, 256)
        if not items:
            return failed
        failed += fail_requests(client, items, status, message)
