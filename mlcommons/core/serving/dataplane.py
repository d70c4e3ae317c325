"""The data plane's wire format, shared by the API (producer) and the workers (consumers).

A predict request is a msgpack array pushed onto its deployment's Redis list:
    [request_id, reply_key, deadline_ms, op, texts, options]
and its reply, pushed onto the API process's reply list:
    text_embedding:   [request_id, OK, rows, dim, float32_bytes]   (texts in)
    text_similarity:  [request_id, OK, rows, 1, float32_bytes]     ([query, texts] in)
    sparse:           [request_id, OK, [{token: weight}, ...]]     (texts in)
    any failure:      [request_id, ERROR, status, message]
Vectors travel as raw little-endian float32, never as lists of Python floats.
"""
from __future__ import annotations

OK = 0
ERROR = 1

OP_TEXT_EMBEDDING = "text_embedding"
OP_TEXT_SIMILARITY = "text_similarity"
OP_SPARSE = "sparse"

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
    import msgpack

    replies: dict = {}
    for raw in raw_requests:
        req = msgpack.unpackb(raw)
        replies.setdefault(req[1], []).append(msgpack.packb([req[0], ERROR, status, message]))
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
