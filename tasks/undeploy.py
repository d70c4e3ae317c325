"""Undeploy: drop models from this node's memory and tell the waiting API what was dropped."""
from workers.node import current


def undeploy_model(request_id: str, model_ids: list[str]) -> dict:
    return current().undeploy(request_id, model_ids)
