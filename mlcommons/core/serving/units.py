"""Serving units: what the deploy machinery deploys, serves and reconciles.

A unit is either a model document (an OpenSearch deploy, or an Elasticsearch deployment whose
deployment_id is the model id) or a deployment document (an Elasticsearch deployment with its own
deployment_id, e.g. an inference endpoint's). Both carry the same serving fields
(``model_state``, ``planning_worker_nodes``, ``current_worker_nodes``, ``_deploy_task``,
``_serving``, ...), so deploy, undeploy, liveness, sync-up and redeploy treat them alike; the unit
id names the route, the prediction queue and what a worker node hosts.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mlcommons.store import keys as K


def kind(reader, unit_id: str) -> str:
    """The document index holding ``unit_id``: ``reader`` is a DocumentStore or a Tx."""
    if hasattr(reader, "exists"):
        return K.DEPLOYMENT if reader.exists(K.DEPLOYMENT, unit_id) else K.MODEL
    return K.DEPLOYMENT if reader.get(K.DEPLOYMENT, unit_id) is not None else K.MODEL


def lookup(reader, unit_id: str) -> tuple[str, dict[str, Any] | None]:
    """(index, document) of a unit in one or two reads; the document is None when there is none
    (the index is then the model index)."""
    doc = reader.get(K.DEPLOYMENT, unit_id)
    if doc is not None:
        return K.DEPLOYMENT, doc
    return K.MODEL, reader.get(K.MODEL, unit_id)


def load(ctx, unit_id: str) -> dict[str, Any] | None:
    """A serving unit's document, whichever kind it is."""
    return lookup(ctx.docs, unit_id)[1]


def model_id_of(index: str, unit_id: str, doc: dict[str, Any]) -> str:
    """The model a unit serves."""
    return doc["model_id"] if index == K.DEPLOYMENT else unit_id


def task_unit(task: dict[str, Any]) -> str:
    """The unit a DEPLOY_MODEL task deploys."""
    return task.get("deployment_id") or task["model_id"]


def all_units(ctx) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(index, unit id, document) of every unit."""
    for index in (K.MODEL, K.DEPLOYMENT):
        for unit_id, doc in ctx.docs.all(index):
            yield index, unit_id, doc


def unit_ids(ctx) -> list[str]:
    return ctx.docs.ids(K.MODEL) + ctx.docs.ids(K.DEPLOYMENT)
