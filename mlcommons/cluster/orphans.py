"""Reconcile step: predictions queued for a deployment that nobody serves any more (its last node
died, or the sync-up found it held nowhere) are answered with an error now, not at their
deadline. New requests are not admitted to such a queue, so whatever is in it is stranded."""
from __future__ import annotations

import logging

from mlcommons.core.context import Context
from mlcommons.core.serving import dataplane as dp
from mlcommons.core.serving import units

log = logging.getLogger(__name__)

NO_SERVER = 503


def step(ctx: Context) -> int:
    ids = units.unit_ids(ctx)
    if not ids:
        return 0
    pipe = ctx.redis.pipeline(transaction=False)
    for model_id in ids:
        pipe.hget(ctx.keys.route(model_id), "workers")
        pipe.llen(ctx.keys.predict_queue(model_id))
    raw = pipe.execute()
    failed = 0
    for i, model_id in enumerate(ids):
        workers, queued = raw[2 * i], raw[2 * i + 1]
        if queued and workers is not None and int(workers) == 0:
            count = dp.drain_with_error(ctx.redis, ctx.keys.predict_queue(model_id), NO_SERVER,
                                        f"no worker node serves model [{model_id}] any more")
            log.info("failed %d stranded predictions of %s", count, model_id)
            failed += count
    return failed
