"""Reconcile step: auto-redeploy. A model that should be served on a live node but is not held
there (the node restarted, joined, or the whole cluster came back from Redis's append-only file)
is deployed there again through an ordinary DEPLOY_MODEL task, within its retry budget."""
from __future__ import annotations

import logging

from mlcommons.core import nodes
from mlcommons.core.context import Context
from mlcommons.core.serving import deploy as deploys
from mlcommons.core.serving import lifecycle, units
from mlcommons.errors import MLError

log = logging.getLogger(__name__)


def step(ctx: Context) -> list[str]:
    if not ctx.settings.get("plugins.ml_commons.model_auto_redeploy.enable"):
        return []
    live = nodes.eligible_nodes(ctx)
    if not live:
        return []
    budget = int(ctx.settings.get("plugins.ml_commons.model_auto_redeploy.lifetime_retry_times"))
    started = []
    for _, model_id, model in units.all_units(ctx):
        if not deploys.wants_redeploy(model) or lifecycle.deploy_task(model):
            continue
        targets = deploys.missing_nodes(model, live)
        if not targets:
            continue
        if int(model.get("auto_redeploy_retry_times") or 0) >= budget:
            continue
        try:
            reply = deploys.deploy(ctx, model_id, targets, reason=deploys.Reason.REDEPLOY)
        except MLError as exc:
            log.warning("auto-redeploy of %s to %s refused: %s", model_id, targets, exc.reason)
            continue
        if reply is not None:
            log.info("auto-redeploy of %s to %s: task %s", model_id, targets, reply["task_id"])
            started.append(model_id)
    return started
