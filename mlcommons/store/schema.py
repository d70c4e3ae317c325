"""The documents' shapes, in one place: every field each index may hold, typed.

Documents stay mappings in code (a transaction updates only the fields it changes), and these
``TypedDict``s name their shapes for readers and type checkers. Storage enforces them: a write of
a field that its index does not declare is refused (``UnknownField``), so a misspelt field fails
where it is written instead of reading back as missing. Fields starting with ``_`` are internal:
never shown to clients (``opensearch/responses.py``), and the serving state's are written only by
``core/serving/lifecycle.py``.
"""
from __future__ import annotations

from typing import Any, TypedDict

from mlcommons.store.keys import API_KEY, CONNECTOR, DEPLOYMENT, ENDPOINT, MODEL, MODEL_GROUP, TASK, USER


class UnknownField(ValueError):
    """A write named a field its index does not declare."""


class ServingUnitDoc(TypedDict, total=False):
    """What deploy, undeploy, the watcher and the routes share, for a model or a deployment."""

    algorithm: str                 # FunctionName
    model_state: str               # ModelState, moved only by core/serving/lifecycle.py
    planning_worker_nodes: list[str]
    planning_worker_node_count: int
    current_worker_nodes: list[str]
    current_worker_node_count: int
    deploy_to_all_nodes: bool
    created_time: int              # ms since the epoch, like every *_time field
    last_updated_time: int
    last_deployed_time: int
    last_undeployed_time: int
    auto_redeploy_retry_times: int
    _serving: dict[str, Any]       # core/serving/spec.py ServingSpec
    _deploy_task: str | None       # the open deploy task
    _failed_by: str | None         # lifecycle.FailedBy
    _deploy_errors: dict[str, str] | None
    _undeploying: int | None       # when an undeploy began


class ModelDoc(ServingUnitDoc, total=False):
    name: str
    model_group_id: str | None
    model_version: str
    description: str
    model_format: str | None       # ModelFormat
    model_content_size_in_bytes: int
    model_content_hash_value: str  # SHA-256, hex
    model_config: dict[str, Any] | None
    deploy_setting: dict[str, Any]
    is_enabled: bool
    rate_limiter: dict[str, Any]
    last_registered_time: int
    total_chunks: int
    is_hidden: bool
    connector_id: str              # a remote model's connector
    connector: dict[str, Any]      # or its own (ConnectorDoc's fields, the credential sealed)
    _version: int                  # the OpenSearch document version of updates
    _es: dict[str, Any]            # an Elasticsearch trained model's config (elasticsearch/trained_models.py)
    _es_parts: dict[str, Any]      # its definition parts received so far
    _vocabulary: dict[str, Any]    # its vocabulary


class DeploymentDoc(ServingUnitDoc, total=False):
    """An Elasticsearch deployment with an id of its own (core/serving/units.py)."""

    model_id: str
    deployment_id: str


class TaskDoc(TypedDict, total=False):
    model_id: str | None
    deployment_id: str
    task_type: str                 # TaskType
    function_name: str | None
    state: str                     # TaskState, moved by core/tasks/records.py transition()
    worker_node: list[str]
    create_time: int
    last_update_time: int
    error: str
    is_async: bool
    _model_id: str                 # a register's model, its source and what follows it
    _source: dict[str, Any]
    _deploy: bool
    _group: dict[str, Any]


class ModelGroupDoc(TypedDict, total=False):
    name: str
    latest_version: int
    description: str | None
    access: str                    # public, private or restricted (core/security/access.py)
    backend_roles: list[str]
    owner: dict[str, Any]          # name, backend_roles, roles of the user who made it
    created_time: int
    last_updated_time: int


class ConnectorDoc(TypedDict, total=False):
    """An ML Commons connector (core/remote/connectors.py)."""

    name: str
    version: str
    description: str
    protocol: str                  # http or aws_sigv4
    parameters: dict[str, str]
    credential: dict[str, str]     # each value sealed by core/remote/secrets.py; never shown
    actions: list[dict[str, Any]]
    client_config: dict[str, Any]
    created_time: int
    last_updated_time: int
    _version: int
    access: str                    # with connector access control: public, private or restricted
    backend_roles: list[str]
    owner: dict[str, Any]


class EndpointDoc(TypedDict, total=False):
    """An Elasticsearch inference endpoint (elasticsearch/endpoints.py)."""

    inference_id: str
    task_type: str
    service: str
    service_settings: dict[str, Any]
    task_settings: dict[str, Any]
    chunking_settings: dict[str, Any]
    created_time: int


class UserDoc(TypedDict, total=False):
    """A user of the native realm (core/security/users.py)."""

    password_hash: str             # bcrypt of the password's SHA-256; never shown
    roles: list[str]
    backend_roles: list[str]
    full_name: str | None
    email: str | None
    enabled: bool
    created_time: int
    last_updated_time: int


class ApiKeyDoc(TypedDict, total=False):
    """An API key (core/security/apikeys.py): only a hash of its secret is kept."""

    name: str
    key_hash: str                  # SHA-256 of the secret (a random 128-bit value); never shown
    username: str
    roles: list[str]               # the owner's, when the key was made
    backend_roles: list[str]
    creation: int
    expiration: int | None
    invalidated: bool
    invalidation: int | None
    metadata: dict[str, Any]


SHAPES: dict[str, type] = {MODEL: ModelDoc, DEPLOYMENT: DeploymentDoc, TASK: TaskDoc, MODEL_GROUP: ModelGroupDoc,
                           ENDPOINT: EndpointDoc, CONNECTOR: ConnectorDoc, USER: UserDoc, API_KEY: ApiKeyDoc}
FIELDS: dict[str, frozenset[str]] = {index: frozenset(shape.__annotations__) | frozenset(
    name for base in shape.__mro__ for name in getattr(base, "__annotations__", {}))
    for index, shape in SHAPES.items()}


def check(index: str, fields: dict[str, Any]) -> None:
    """Refuse a write of a field that ``index`` does not declare."""
    known = FIELDS.get(index)
    if known is None:
        raise UnknownField(f"unknown index [{index}]")
    unknown = [name for name in fields if name not in known]
    if unknown:
        raise UnknownField(f"[{index}] documents have no field {sorted(unknown)}; declare it in store/schema.py")
