"""The named shapes that flow through the system: states, task types and function names.

Every enum is a ``str`` Enum whose values are the wire strings, so a value serialises as itself.
"""
from __future__ import annotations

from enum import Enum


class TaskState(str, Enum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    COMPLETED_WITH_ERROR = "COMPLETED_WITH_ERROR"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_TASK_STATES


TERMINAL_TASK_STATES = frozenset(
    {TaskState.COMPLETED, TaskState.COMPLETED_WITH_ERROR, TaskState.FAILED, TaskState.CANCELLED}
)


class TaskType(str, Enum):
    REGISTER_MODEL = "REGISTER_MODEL"
    DEPLOY_MODEL = "DEPLOY_MODEL"


class ModelState(str, Enum):
    REGISTERING = "REGISTERING"
    REGISTERED = "REGISTERED"
    DEPLOYING = "DEPLOYING"
    DEPLOYED = "DEPLOYED"
    PARTIALLY_DEPLOYED = "PARTIALLY_DEPLOYED"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    UNDEPLOYED = "UNDEPLOYED"


class FunctionName(str, Enum):
    TEXT_EMBEDDING = "TEXT_EMBEDDING"
    SPARSE_ENCODING = "SPARSE_ENCODING"
    SPARSE_TOKENIZE = "SPARSE_TOKENIZE"
    TEXT_SIMILARITY = "TEXT_SIMILARITY"
    REMOTE = "REMOTE"  # a model hosted elsewhere, reached through a connector


class ModelFormat(str, Enum):
    TORCH_SCRIPT = "TORCH_SCRIPT"
    ONNX = "ONNX"


class FrameworkType(str, Enum):
    SENTENCE_TRANSFORMERS = "SENTENCE_TRANSFORMERS"
    HUGGINGFACE_TRANSFORMERS = "HUGGINGFACE_TRANSFORMERS"


class PoolingMode(str, Enum):
    MEAN = "MEAN"
    CLS = "CLS"
    MAX = "MAX"
    MEAN_SQRT_LEN = "MEAN_SQRT_LEN"
    WEIGHTED_MEAN = "WEIGHTED_MEAN"
