"""REGISTER_MODEL: download (or convert a pretrained model) into the model store."""
from mlcommons.core.models import register
from workers.node import current
from workers.pretrained import materialize


def register_model(task_id: str) -> dict:
    node = current()
    model_id = register.execute(node.ctx, task_id, node.node_id, materialize, cancelled=node.stopping)
    return {"task_id": task_id, "model_id": model_id}
