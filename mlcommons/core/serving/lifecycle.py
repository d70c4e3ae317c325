"""The model state machine: the one place that moves a serving unit (a model, or an
Elasticsearch deployment) from state to state.

A move is asked for by an ``Event``; :func:`fields_for` checks it against ``MODEL_TRANSITIONS``,
refuses an illegal one (``IllegalTransition``), and returns the fields to write: ``model_state``
and the sub-states that only this module writes:

- ``_deploy_task``: the open deploy task, while one runs (a model has at most one);
- ``_failed_by``: why a model is DEPLOY_FAILED (``FailedBy``): its nodes went away, which an
  auto-redeploy repairs, or its deploy failed on every node, which is never retried on its own;
- ``_deploy_errors``: what each node said about the last deploy (Elasticsearch's routing table
  gives it as a failed node's reason);
- ``_undeploying``: when an undeploy began. UNDEPLOYING is a state of its own here (``phase``),
  though on the wire the model keeps its serving state until the undeploy ends, as in ML Commons.

:func:`move` applies a move inside a document transaction. Anything that writes ``model_state``
goes through it; the creation of a document takes its first state from :func:`initial`.
"""
from __future__ import annotations

from enum import Enum
from typing import Any

from mlcommons.core.tasks.states import IllegalTransition
from mlcommons.ids import now_ms
from mlcommons.store.documents import Tx
from mlcommons.types import ModelState

M = ModelState
_DEPLOY_OUTCOMES = {M.DEPLOYED, M.PARTIALLY_DEPLOYED, M.DEPLOY_FAILED}
MODEL_TRANSITIONS: dict[ModelState, frozenset[ModelState]] = {
    M.REGISTERING: frozenset({M.REGISTERING, M.REGISTERED}),
    M.REGISTERED: frozenset({M.REGISTERED, M.DEPLOYING, M.UNDEPLOYED}),
    M.DEPLOYING: frozenset({M.DEPLOYING, M.UNDEPLOYED} | _DEPLOY_OUTCOMES),
    M.DEPLOYED: frozenset({M.DEPLOYING, M.UNDEPLOYED} | _DEPLOY_OUTCOMES),
    M.PARTIALLY_DEPLOYED: frozenset({M.DEPLOYING, M.UNDEPLOYED} | _DEPLOY_OUTCOMES),
    M.DEPLOY_FAILED: frozenset({M.DEPLOYING, M.UNDEPLOYED} | _DEPLOY_OUTCOMES),
    # A node that finished loading after its deploy was cancelled, or did not answer an undeploy
    # in time, still serves the model: it counts as deployed there until the sync-up drops it.
    M.UNDEPLOYED: frozenset({M.DEPLOYING, M.UNDEPLOYED, M.DEPLOYED, M.PARTIALLY_DEPLOYED}),
}
# States in which a model occupies (or is about to occupy) node memory.
ACTIVE_MODEL_STATES = frozenset({M.DEPLOYING, M.DEPLOYED, M.PARTIALLY_DEPLOYED})
# States from which a deploy may start.
DEPLOYABLE_MODEL_STATES = frozenset(
    {M.REGISTERED, M.DEPLOYING, M.DEPLOYED, M.PARTIALLY_DEPLOYED, M.DEPLOY_FAILED, M.UNDEPLOYED})
# An undeploy that has not finished within this long (its API process died) no longer blocks redeploys.
UNDEPLOY_GUARD_MS = 5 * 60 * 1000


class FailedBy(str, Enum):
    """Why a model is DEPLOY_FAILED."""

    NODE_LOSS = "node_lost"  # its nodes went away: auto-redeploy brings it back
    DEPLOY = "deploy"        # its deploy failed on every node: as in ML Commons, never retried on its own


class Event(str, Enum):
    REGISTERED = "registered"                # every chunk is stored and checked
    DEPLOY_REQUESTED = "deploy_requested"    # a deploy task was created (facts: task_id, serving_on_targets)
    DEPLOY_FINISHED = "deploy_finished"      # its task closed (facts: current, planned, errors)
    DEPLOY_ABANDONED = "deploy_abandoned"    # DEPLOYING with no live task left (facts: current, planned)
    NODES_CHANGED = "nodes_changed"          # a node took or dropped it outside a deploy (facts: current, planned)
    DEPLOY_CANCELLED = "deploy_cancelled"    # an undeploy cancelled its open deploy task
    UNDEPLOY_BEGUN = "undeploy_begun"        # nodes were asked to drop it
    UNDEPLOY_FINISHED = "undeploy_finished"  # their answers are in (facts: current, plan)


class Phase(str, Enum):
    """The state with its hidden sub-states made explicit, for decisions and for readers."""

    REGISTERING = "REGISTERING"
    REGISTERED = "REGISTERED"
    DEPLOYING = "DEPLOYING"
    DEPLOYED = "DEPLOYED"
    PARTIALLY_DEPLOYED = "PARTIALLY_DEPLOYED"
    FAILED_BY_NODE_LOSS = "DEPLOY_FAILED_BY_NODE_LOSS"
    FAILED_BY_DEPLOY = "DEPLOY_FAILED_BY_DEPLOY"
    UNDEPLOYING = "UNDEPLOYING"
    UNDEPLOYED = "UNDEPLOYED"


def initial(state: ModelState = M.REGISTERING) -> dict[str, Any]:
    """The state fields of a new document: REGISTERING (a model) or UNDEPLOYED (an Elasticsearch
    deployment, which exists only to be deployed)."""
    if state not in (M.REGISTERING, M.REGISTERED, M.UNDEPLOYED):
        raise IllegalTransition(f"a serving unit cannot begin {state.value}")
    return {"model_state": state.value}


def check_model(current: str, target: str) -> ModelState:
    cur, tgt = ModelState(current), ModelState(target)
    if tgt not in MODEL_TRANSITIONS[cur]:
        raise IllegalTransition(f"model cannot go from {cur.value} to {tgt.value}")
    return tgt


def serving_state(current: int, planned: int) -> ModelState:
    """The model state once no deploy is pending, from how many nodes hold it out of the plan."""
    if current <= 0:
        return M.DEPLOY_FAILED
    if current < planned:
        return M.PARTIALLY_DEPLOYED
    return M.DEPLOYED


def failed_by(doc: dict[str, Any]) -> FailedBy | None:
    if doc.get("model_state") != M.DEPLOY_FAILED.value or not doc.get("_failed_by"):
        return None
    return FailedBy(doc["_failed_by"])


def undeploying(doc: dict[str, Any]) -> bool:
    """Whether an undeploy of the unit is under way (and not abandoned by a dead API process)."""
    since = doc.get("_undeploying")
    return bool(since) and now_ms() - int(since) < UNDEPLOY_GUARD_MS


def deploy_task(doc: dict[str, Any]) -> str | None:
    return doc.get("_deploy_task") or None


def phase(doc: dict[str, Any]) -> Phase:
    if undeploying(doc):
        return Phase.UNDEPLOYING
    reason = failed_by(doc)
    if reason is FailedBy.NODE_LOSS:
        return Phase.FAILED_BY_NODE_LOSS
    if doc.get("model_state") == M.DEPLOY_FAILED.value:
        return Phase.FAILED_BY_DEPLOY
    return Phase(doc["model_state"])


def _settled(state: ModelState, reason: FailedBy) -> dict[str, Any]:
    return {"model_state": state.value, "_failed_by": reason.value if state is M.DEPLOY_FAILED else None}


def fields_for(doc: dict[str, Any], event: Event, **facts: Any) -> dict[str, Any]:
    """The fields that ``event`` writes on ``doc`` (nothing is written here); IllegalTransition
    if the move is not allowed from the document's state."""
    state = ModelState(doc["model_state"])
    out: dict[str, Any] = {}
    if event is Event.REGISTERED:
        out["model_state"] = M.REGISTERED.value
    elif event is Event.DEPLOY_REQUESTED:
        if state not in DEPLOYABLE_MODEL_STATES:
            raise IllegalTransition(f"model cannot be deployed from {state.value}")
        out.update(_deploy_task=facts["task_id"], _failed_by=None, _deploy_errors=None)
        if not facts["serving_on_targets"]:  # one serving on every target keeps serving meanwhile
            out["model_state"] = M.DEPLOYING.value
    elif event is Event.DEPLOY_FINISHED:
        out.update(_settled(serving_state(facts["current"], facts["planned"]), FailedBy.DEPLOY),
                   _deploy_task=None, _deploy_errors=facts.get("errors") or None)
    elif event is Event.DEPLOY_ABANDONED:
        out.update(_settled(serving_state(facts["current"], facts["planned"]), FailedBy.DEPLOY), _deploy_task=None)
    elif event is Event.NODES_CHANGED:
        # A deploy under way owns the state until it finishes; a unit that was never deployed,
        # or is undeployed and held nowhere, has no serving state to recompute.
        if deploy_task(doc) or state in (M.REGISTERING, M.REGISTERED) or \
                (state is M.UNDEPLOYED and not facts["current"]):
            return {}
        out.update(_settled(serving_state(facts["current"], facts["planned"]), FailedBy.NODE_LOSS))
    elif event is Event.DEPLOY_CANCELLED:
        out["_deploy_task"] = None
    elif event is Event.UNDEPLOY_BEGUN:
        if state is M.REGISTERING:
            raise IllegalTransition("a model still registering is deployed nowhere and cannot be undeployed")
        out["_undeploying"] = now_ms()
    elif event is Event.UNDEPLOY_FINISHED:
        out["_undeploying"] = None
        if facts.get("deploy_after"):
            pass  # a deploy asked for after this undeploy began owns the plan and the state now
        elif not facts["current"]:
            out.update(model_state=M.UNDEPLOYED.value, planning_worker_nodes=[], planning_worker_node_count=0,
                       current_worker_node_count=0, deploy_to_all_nodes=False, last_undeployed_time=now_ms(),
                       _failed_by=None, _deploy_errors=None, _deploy_task=None)
        else:
            plan = facts["plan"]
            out.update(planning_worker_nodes=plan, planning_worker_node_count=len(plan), deploy_to_all_nodes=False)
            if not deploy_task(doc):
                out.update(_settled(serving_state(len(facts["current"]), len(plan)), FailedBy.NODE_LOSS))
    else:  # pragma: no cover - every event is handled above
        raise IllegalTransition(f"unknown event {event}")
    if "model_state" in out:
        check_model(state.value, out["model_state"])
    return out


def move(tx: Tx, index: str, unit_id: str, doc: dict[str, Any], event: Event, extra: dict[str, Any] | None = None,
         **facts: Any) -> dict[str, Any]:
    """Apply ``event`` to the unit in a transaction: write its fields (with ``extra``, the
    caller's own fields such as timestamps) and update ``doc`` in place. Returns what it wrote."""
    fields = fields_for(doc, event, **facts)
    if fields and "model_state" in fields:
        fields.setdefault("last_updated_time", now_ms())
    fields = {**(extra or {}), **fields}
    if fields:
        tx.update(index, unit_id, fields)
        doc.update(fields)
    return fields
