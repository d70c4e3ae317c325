"""DEPLOY_MODEL: load a model into this node's memory and start serving it."""
from workers.node import current


def deploy_model(task_id: str, model_id: str) -> dict:
    return current().deploy(task_id, model_id)
