"""The data plane's wire format, shared by the API (producer) and the workers (consumers).

A predict request is a msgpack array pushed onto its deployment's Redis list:
    [request_id, reply_key, deadline_ms, op, texts, options]
and its reply, pushed onto the API process's reply list:
    [request_id, OK, rows, dim, float32_bytes]    or    [request_id, ERROR, status, message]
Embeddings travel as raw little-endian float32, never as lists of Python floats.
"""
from __future__ import annotations

OK = 0
ERROR = 1

OP_TEXT_EMBEDDING = "text_embedding"

# Admission: a request enters the deployment's queue only while someone serves it and the queue
# holds fewer than its capacity; one script, so the check and the push are one atomic step.
# Returns 1 accepted, 0 no route (never deployed or undeployed), -1 no worker, -2 queue full.
ADMIT_SCRIPT = """
local route = redis.call('HMGET', KEYS[1], 'workers', 'capacity')
if not route[1] then return 0 end
if tonumber(route[1]) <= 0 then return -1 end
if redis.call('LLEN', KEYS[2]) >= tonumber(route[2]) then return -2 end
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
