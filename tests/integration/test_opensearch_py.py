"""opensearch-py, the OpenSearch project's Python client, over every ML Commons route of the API:
``transport.perform_request`` as opensearch-py-ml and users' scripts call it, one valid request
per route (the trailing-slash twins aside) with the answer a user reads, and errors surfacing as
opensearch-py's own exception classes with their status and error type.

``test_every_ml_route_is_in_the_table`` walks the application's router and fails when a route
under ``/_plugins/_ml`` has no row here (or a row names a route that does not exist)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError, RequestError, TransportError

from tests.cluster import ML
from tests.integration.flows import unique

CHUNK = 10_000_000  # opensearch-py-ml's chunk size
TEXTS = ["hello world", "a second sentence"]


def connector_body(name: str | None = None) -> dict:
    return {"name": name or unique("connector"), "description": "an OpenAI-format endpoint", "version": "1",
            "protocol": "http", "parameters": {"model": "text-embedding-3-small"},
            "credential": {"openAI_key": "sk-never-shown"},
            "actions": [{"action_type": "predict", "method": "POST", "url": "http://127.0.0.1:9/v1/embeddings",
                         "headers": {"Authorization": "Bearer ${credential.openAI_key}"},
                         "request_body": '{ "input": ${parameters.input}, "model": "${parameters.model}" }'}]}


class World:
    """The cluster through opensearch-py, and the things the rows need, made on demand and
    removed at the end."""

    def __init__(self, client: OpenSearch, cluster, tiny: tuple[Path, dict]):
        self.client, self.cluster = client, cluster
        self.zip_path, self.info = tiny
        self.archive = Path(self.zip_path).read_bytes()
        self.models: list[str] = []
        self.groups: list[str] = []
        self.connectors: list[str] = []
        self._model: str | None = None

    def call(self, method: str, path: str, body: Any = None, params: dict | None = None):
        return self.client.transport.perform_request(method, path, params=params, body=body)

    # --- things to act on ------------------------------------------------------------------
    def meta(self, **extra) -> dict:
        """A ``_register_meta`` body for the tiny archive, as opensearch-py-ml sends it."""
        return {"name": unique("py"), "version": "1", "model_format": "TORCH_SCRIPT",
                "function_name": "TEXT_EMBEDDING", "model_group_id": "",
                "model_content_size_in_bytes": len(self.archive),
                "model_content_hash_value": self.info["model_content_hash_value"],
                "total_chunks": math.ceil(len(self.archive) / CHUNK), "model_config": self.info["model_config"],
                **extra}

    def url_body(self) -> dict:
        return {"name": unique("py-url"), "version": "1.0.0", "model_format": "TORCH_SCRIPT",
                "function_name": "TEXT_EMBEDDING", "model_config": self.info["model_config"],
                "model_content_hash_value": self.info["model_content_hash_value"],
                "url": Path(self.zip_path).resolve().as_uri()}

    def registered_meta(self) -> str:
        """A model whose meta is registered and whose chunks are not uploaded yet."""
        model_id = self.call("POST", f"{ML}/models/_register_meta", self.meta())["model_id"]
        self.models.append(model_id)
        return model_id

    def registered(self) -> str:
        """A REGISTERED model: meta, then its chunks."""
        model_id = self.registered_meta()
        for number in range(math.ceil(len(self.archive) / CHUNK)):
            piece = self.archive[number * CHUNK:(number + 1) * CHUNK]
            self.call("POST", f"{ML}/models/{model_id}/chunk/{number}", piece)
        return model_id

    def deployed(self) -> str:
        model_id = self.registered()
        task_id = self.call("POST", f"{ML}/models/{model_id}/_deploy")["task_id"]
        assert self.cluster.wait_task(task_id)["state"] == "COMPLETED"
        return model_id

    @property
    def model(self) -> str:
        """One deployed model the read-only rows share."""
        if self._model is None:
            self._model = self.deployed()
        return self._model

    def registered_by_url(self) -> tuple[str, str]:
        """(task_id, model_id) of a finished URL registration."""
        task_id = self.call("POST", f"{ML}/models/_register", self.url_body())["task_id"]
        task = self.cluster.wait_task(task_id)
        assert task["state"] == "COMPLETED", task
        self.models.append(task["model_id"])
        return task_id, task["model_id"]

    def group(self) -> str:
        group_id = self.call("POST", f"{ML}/model_groups/_register", {"name": unique("py-group")})["model_group_id"]
        self.groups.append(group_id)
        return group_id

    def connector(self) -> str:
        connector_id = self.call("POST", f"{ML}/connectors/_create", connector_body())["connector_id"]
        self.connectors.append(connector_id)
        return connector_id

    def clean(self) -> None:
        api = self.cluster.api
        for model_id in self.models:
            api.post(f"{ML}/models/{model_id}/_undeploy")
            api.delete(f"{ML}/models/{model_id}")
        for group_id in self.groups:
            api.delete(f"{ML}/model_groups/{group_id}")
        for connector_id in self.connectors:
            api.delete(f"{ML}/connectors/{connector_id}")


@dataclass
class Row:
    """One route: ``request(world)`` gives (path, body) or (path, body, params); ``check(answer,
    world, path)`` asserts on what opensearch-py returned."""
    method: str
    route: str
    request: Callable[[World], tuple]
    check: Callable[[Any, World, str], None]

    @property
    def id(self) -> str:
        return f"{self.method} {self.route}"


def _id_of(path: str, after: str) -> str:
    return path.split(after, 1)[1].split("/")[0]


# --- the checks ------------------------------------------------------------------------------

def written(result: str, index: str):
    def check(answer, world, path):
        assert answer["result"] == result and answer["_index"] == index and answer["_id"] in path
    return check


def hits(answer, world, path):
    assert answer["hits"]["total"]["value"] >= 1 and answer["hits"]["hits"][0]["_id"]


def task_created(task_type: str | None = None):
    def check(answer, world, path):
        assert answer["status"] == "CREATED" and answer["task_id"]
        if task_type:
            assert answer["task_type"] == task_type
        task = world.cluster.wait_task(answer["task_id"])
        assert task["state"] == "COMPLETED", task
        if task.get("model_id") and task["model_id"] not in world.models:
            world.models.append(task["model_id"])
    return check


def undeployed(answer, world, path):
    assert answer, "an undeploy answers per node"
    for node in answer.values():
        assert set(node["stats"].values()) == {"undeployed"}


def embeddings(answer, world, path):
    results = answer["inference_results"]
    assert len(results) == len(TEXTS)
    for result in results:
        (tensor,) = result["output"]
        assert tensor["name"] == "sentence_embedding" and tensor["data_type"] == "FLOAT32"
        assert tensor["shape"] == [world.info["model_config"]["embedding_dimension"]] == [len(tensor["data"])]


def profiled(answer, world, path):
    assert any(world.model in node.get("models", {}) for node in answer["nodes"].values())


def connector_shown(answer, world, path):
    assert answer["name"] and answer["actions"][0]["url"].startswith("http://127.0.0.1")
    assert "sk-never-shown" not in json.dumps(answer) and "credential" not in answer


def uploaded(answer, world, path):
    assert answer == {"status": "Uploaded"}
    model_id = _id_of(path, "/models/")
    assert world.call("GET", f"{ML}/models/{model_id}")["model_state"] == "REGISTERED"


def group_updated(answer, world, path):
    assert answer == {"status": "Updated"}
    assert world.call("GET", path)["description"] == "renamed by opensearch-py"


def openapi(answer, world, path):
    assert answer["openapi"].startswith("3.") and f"{ML}/models/{{model_id}}" in answer["paths"]


QUERY = {"query": {"match_all": {}}, "size": 5}
CHUNK0 = lambda w: w.archive[:CHUNK]  # noqa: E731

ROWS = [
    # connectors
    Row("POST", "/connectors/_create", lambda w: (f"{ML}/connectors/_create", connector_body()),
        lambda a, w, p: w.connectors.append(a["connector_id"])),
    Row("GET", "/connectors/_search", lambda w: (w.connector() and f"{ML}/connectors/_search", QUERY), hits),
    Row("POST", "/connectors/_search", lambda w: (w.connector() and f"{ML}/connectors/_search", QUERY), hits),
    Row("GET", "/connectors/{connector_id}", lambda w: (f"{ML}/connectors/{w.connector()}", None), connector_shown),
    Row("PUT", "/connectors/{connector_id}",
        lambda w: (f"{ML}/connectors/{w.connector()}", {"description": "changed"}),
        written("updated", ".plugins-ml-connector")),
    Row("DELETE", "/connectors/{connector_id}", lambda w: (f"{ML}/connectors/{w.connector()}", None),
        written("deleted", ".plugins-ml-connector")),
    # model groups
    Row("POST", "/model_groups/_register", lambda w: (f"{ML}/model_groups/_register", {"name": unique("g")}),
        lambda a, w, p: w.groups.append(a["model_group_id"]) or a["status"] == "CREATED" or pytest.fail(a)),
    Row("GET", "/model_groups/_search", lambda w: (w.group() and f"{ML}/model_groups/_search", QUERY), hits),
    Row("POST", "/model_groups/_search", lambda w: (w.group() and f"{ML}/model_groups/_search", QUERY), hits),
    Row("GET", "/model_groups/{group_id}", lambda w: (f"{ML}/model_groups/{w.group()}", None),
        lambda a, w, p: a["latest_version"] == 0 or pytest.fail(a)),
    Row("PUT", "/model_groups/{group_id}",
        lambda w: (f"{ML}/model_groups/{w.group()}", {"description": "renamed by opensearch-py"}), group_updated),
    Row("DELETE", "/model_groups/{group_id}", lambda w: (f"{ML}/model_groups/{w.group()}", None),
        written("deleted", ".plugins-ml-model-group")),
    # models: registration
    Row("POST", "/models/_register", lambda w: (f"{ML}/models/_register", w.url_body()), task_created()),
    Row("POST", "/models/_upload", lambda w: (f"{ML}/models/_upload", w.url_body()), task_created()),
    Row("POST", "/models/_register_meta", lambda w: (f"{ML}/models/_register_meta", w.meta()),
        lambda a, w, p: w.models.append(a["model_id"]) or a["status"] == "CREATED" or pytest.fail(a)),
    Row("POST", "/models/meta", lambda w: (f"{ML}/models/meta", w.meta()),
        lambda a, w, p: w.models.append(a["model_id"]) or a["status"] == "CREATED" or pytest.fail(a)),
    Row("POST", "/models/{model_id}/upload_chunk/{chunk_number}",
        lambda w: (f"{ML}/models/{w.registered_meta()}/upload_chunk/0", CHUNK0(w)), uploaded),
    Row("POST", "/models/{model_id}/chunk/{chunk_number}",
        lambda w: (f"{ML}/models/{w.registered_meta()}/chunk/0", CHUNK0(w)), uploaded),
    # models: read, change, remove
    Row("GET", "/models/_search", lambda w: (w.model and f"{ML}/models/_search", QUERY), hits),
    Row("POST", "/models/_search",
        lambda w: (f"{ML}/models/_search", {"query": {"term": {"_id": w.model}}}),
        lambda a, w, p: [h["_id"] for h in a["hits"]["hits"]] == [w.model] or pytest.fail(a)),
    Row("GET", "/models/{model_id}", lambda w: (f"{ML}/models/{w.model}", None),
        lambda a, w, p: a["model_state"] == "DEPLOYED" and a["algorithm"] == "TEXT_EMBEDDING" or pytest.fail(a)),
    Row("PUT", "/models/{model_id}", lambda w: (f"{ML}/models/{w.registered()}", {"description": "changed"}),
        written("updated", ".plugins-ml-model")),
    Row("DELETE", "/models/{model_id}", lambda w: (f"{ML}/models/{w.registered()}", None),
        written("deleted", ".plugins-ml-model")),
    # models: serving
    Row("POST", "/models/{model_id}/_deploy", lambda w: (f"{ML}/models/{w.registered()}/_deploy", None),
        task_created("DEPLOY_MODEL")),
    Row("POST", "/models/{model_id}/_load", lambda w: (f"{ML}/models/{w.registered()}/_load", None),
        task_created("DEPLOY_MODEL")),
    Row("POST", "/models/{model_id}/_undeploy", lambda w: (f"{ML}/models/{w.deployed()}/_undeploy", None), undeployed),
    Row("POST", "/models/{model_id}/_unload", lambda w: (f"{ML}/models/{w.deployed()}/_unload", None), undeployed),
    Row("POST", "/models/_undeploy", lambda w: (f"{ML}/models/_undeploy", {"model_ids": [w.deployed()]}), undeployed),
    Row("POST", "/models/_unload", lambda w: (f"{ML}/models/_unload", {"model_ids": [w.deployed()]}), undeployed),
    Row("POST", "/models/{model_id}/_predict",
        lambda w: (f"{ML}/models/{w.model}/_predict", {"text_docs": TEXTS}), embeddings),
    Row("POST", "/_predict/{algorithm}/{model_id}",
        lambda w: (f"{ML}/_predict/text_embedding/{w.model}", {"text_docs": TEXTS,
                                                               "target_response": ["sentence_embedding"]}),
        embeddings),
    # profile
    Row("GET", "/profile", lambda w: (w.model and f"{ML}/profile", None), profiled),
    Row("GET", "/profile/models", lambda w: (w.model and f"{ML}/profile/models", None), profiled),
    Row("GET", "/profile/models/{model_ids}", lambda w: (f"{ML}/profile/models/{w.model}", None), profiled),
    # tasks
    Row("GET", "/tasks/_search", lambda w: (w.model and f"{ML}/tasks/_search", QUERY), hits),
    Row("POST", "/tasks/_search",
        lambda w: (f"{ML}/tasks/_search", {"query": {"term": {"model_id": w.model}}}),
        lambda a, w, p: {h["_source"]["task_type"] for h in a["hits"]["hits"]} >= {"DEPLOY_MODEL"} or pytest.fail(a)),
    Row("GET", "/tasks/{task_id}", lambda w: (f"{ML}/tasks/{w.registered_by_url()[0]}", None),
        lambda a, w, p: a["state"] == "COMPLETED" and a["task_type"] == "REGISTER_MODEL" or pytest.fail(a)),
    Row("DELETE", "/tasks/{task_id}", lambda w: (f"{ML}/tasks/{w.registered_by_url()[0]}", None),
        written("deleted", ".plugins-ml-task")),
    # the API's own description of itself
    Row("GET", "/openapi.json", lambda w: (f"{ML}/openapi.json", None), openapi),
]


@pytest.fixture(scope="module")
def world(cluster, tiny):
    client = OpenSearch(hosts=[cluster.api.base], timeout=120, max_retries=0)
    made = World(client, cluster, tiny)
    yield made
    made.clean()
    client.close()


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_route(world, row):
    path, body, *params = row.request(world)
    answer = world.call(row.method, path, body, params[0] if params else None)
    row.check(answer, world, path)


# --- errors: opensearch-py raises its own class, with the status and the error type ------------

ERRORS = [
    ("unknown model", lambda w: ("GET", f"{ML}/models/nope", None), NotFoundError, 404, "status_exception"),
    ("unknown task", lambda w: ("DELETE", f"{ML}/tasks/nope", None), NotFoundError, 404, "status_exception"),
    ("unknown group", lambda w: ("GET", f"{ML}/model_groups/nope", None), NotFoundError, 404, "status_exception"),
    ("unknown connector", lambda w: ("GET", f"{ML}/connectors/nope", None), NotFoundError, 404, "status_exception"),
    ("register without a name", lambda w: ("POST", f"{ML}/models/_register", {"model_format": "TORCH_SCRIPT"}),
     RequestError, 400, "illegal_argument_exception"),
    ("text_docs not a list", lambda w: ("POST", f"{ML}/models/{w.model}/_predict", {"text_docs": "x"}),
     RequestError, 400, "illegal_argument_exception"),
    ("unknown algorithm", lambda w: ("POST", f"{ML}/_predict/not_an_algo/{w.model}", {"text_docs": ["x"]}),
     RequestError, 400, "illegal_argument_exception"),
    ("body not an object", lambda w: ("POST", f"{ML}/models/_search", "[1, 2]"), RequestError, 400,
     "parse_exception"),
    ("delete a deployed model", lambda w: ("DELETE", f"{ML}/models/{w.model}", None), RequestError, 400,
     "illegal_argument_exception"),
    ("negative chunk number", lambda w: ("POST", f"{ML}/models/{w.registered_meta()}/chunk/-1", b"x"),
     RequestError, 400, "illegal_argument_exception"),
    ("second group of one name", lambda w: ("POST", f"{ML}/model_groups/_register",
                                            {"name": w.call("GET", f"{ML}/model_groups/{w.group()}")["name"]}),
     RequestError, 400, "illegal_argument_exception"),
    ("unknown ML route", lambda w: ("GET", f"{ML}/no_such_thing", None), RequestError, 400,
     "illegal_argument_exception"),
    ("method not allowed", lambda w: ("PATCH", f"{ML}/models/abc", None), TransportError, 405, None),
]


@pytest.mark.parametrize("case", ERRORS, ids=[e[0] for e in ERRORS])
def test_error(world, case):
    _, request, exc_class, status, error_type = case
    method, path, body = request(world)
    with pytest.raises(exc_class) as raised:
        world.call(method, path, body)
    exc = raised.value
    assert exc.status_code == status, exc.info
    info = exc.info
    assert isinstance(info, dict) and info["status"] == status, info
    assert set(info["error"]) >= {"root_cause", "type", "reason"}
    if error_type is not None:
        assert exc.error == info["error"]["type"] == error_type, info


def test_a_connector_in_use_is_a_conflict(world):
    """409 comes out as ConflictError: a connector held by a remote model cannot be deleted."""
    connector_id = world.connector()
    body = {"name": unique("remote"), "function_name": "remote", "connector_id": connector_id}
    model_id = world.call("POST", f"{ML}/models/_register", body)["model_id"]
    world.models.append(model_id)
    with pytest.raises(ConflictError) as raised:
        world.call("DELETE", f"{ML}/connectors/{connector_id}")
    assert raised.value.status_code == 409 and raised.value.info["status"] == 409


# --- opensearch-py's own ML helpers (client.plugins.ml), over the same routes -----------------------

def test_the_ml_helpers_drive_a_model_lifecycle(world):
    ml = world.client.plugins.ml
    group_id = ml.register_model_group(body={"name": unique("helpers")})["model_group_id"]
    world.groups.append(group_id)
    assert ml.get_model_group(model_group_id=group_id)["latest_version"] == 0
    model_id = ml.register_model_meta(body=world.meta(model_group_id=group_id))["model_id"]
    world.models.append(model_id)
    assert ml.upload_chunk(model_id=model_id, chunk_number=0, body=world.archive) == {"status": "Uploaded"}
    task_id = ml.deploy_model(model_id=model_id)["task_id"]
    world.cluster.wait_task(task_id)
    assert ml.get_task(task_id=task_id)["state"] == "COMPLETED"
    assert ml.get_model(model_id=model_id)["model_state"] == "DEPLOYED"
    by_route = ml.predict_model(model_id=model_id, body={"text_docs": TEXTS})
    by_algorithm = ml.predict(algorithm_name="text_embedding", model_id=model_id, body={"text_docs": TEXTS})
    assert by_route == by_algorithm and len(by_route["inference_results"]) == len(TEXTS)
    assert model_id in str(ml.get_profile_models(model_id=model_id)["nodes"])
    found = ml.search_models(body={"query": {"term": {"model_group_id": group_id}}})["hits"]["hits"]
    assert [h["_id"] for h in found] == [model_id]
    assert set(ml.undeploy_model(model_id=model_id)) == set(world.cluster.nodes)
    assert ml.delete_model(model_id=model_id)["result"] == "deleted"
    assert ml.delete_task(task_id=task_id)["result"] == "deleted"
    with pytest.raises(NotFoundError):
        ml.get_model(model_id=model_id)


def test_the_profile_shows_a_deploy_once_its_task_completes_and_an_undeploy_once_answered(world):
    """Regression: the profile is built from the nodes' heartbeats (one a second), so a client that
    asked for it right after the deploy task completed got ``{}``, where ML Commons, which asks
    the nodes, lists the model. Nodes now beat at once when what they hold changes."""
    ml = world.client.plugins.ml
    model_id = world.registered()
    task_id = ml.deploy_model(model_id=model_id)["task_id"]
    assert world.cluster.wait_task(task_id, timeout=60)["state"] == "COMPLETED"
    profile = ml.get_profile_models(model_id=model_id)
    assert sorted(profile["nodes"]) == sorted(world.cluster.nodes), profile
    assert all(node["models"][model_id]["model_state"] == "DEPLOYED" for node in profile["nodes"].values())
    ml.undeploy_model(model_id=model_id)
    assert ml.get_profile_models(model_id=model_id) == {}


# --- cluster routes, through opensearch-py's own helpers where it has them ------------------------

def test_cluster_routes_through_the_helpers(world):
    client = world.client
    info = client.info()
    assert info["version"]["distribution"] == "opensearch" and info["cluster_uuid"]
    assert client.ping() is True
    # (opensearch-py takes a ``timeout`` parameter as its own read time-out, so the server's default 30s stands)
    health = client.cluster.health(params={"wait_for_nodes": ">=2"})
    assert health["number_of_nodes"] >= 2 and health["status"] in ("green", "yellow")
    nodes = client.nodes.info()
    assert set(world.cluster.nodes) <= set(nodes["nodes"])
    settings = client.cluster.get_settings(params={"flat_settings": "true"})
    assert settings["persistent"]["plugins.ml_commons.allow_registering_model_via_url"] == "true"
    name = "plugins.ml_commons.sync_up_job_interval_in_seconds"
    answer = client.cluster.put_settings(body={"transient": {name: 3}}, params={"flat_settings": "true"})
    try:
        assert answer["acknowledged"] is True and answer["transient"] == {name: "3"}
    finally:
        client.cluster.put_settings(body={"transient": {name: None}})
    with pytest.raises(RequestError) as raised:
        client.cluster.put_settings(body={"persistent": {"no.such.setting": 1}})
    assert raised.value.status_code == 400
    # the security plugin's "who am I" answers only with security on (tests/e2e/test_serve_secure.py)
    with pytest.raises(RequestError) as raised:
        client.security.authinfo()
    assert raised.value.status_code == 400 and raised.value.error == "security_exception"


# --- the table covers the router --------------------------------------------------------------

def test_every_ml_route_is_in_the_table(redis_url, tmp_path):
    from mlcommons.api.app import create_app
    from mlcommons.core.context import Context
    from mlcommons.core.remote.secrets import create_key_file
    from mlcommons.settings import static_values

    static = static_values(environ={})
    static["mlcommons.redis.key_prefix"] = unique("routes")
    static["mlcommons.security.master_key_file"] = str(create_key_file(tmp_path / "master.key"))
    ctx = Context.connect(redis_url, static=static)
    try:
        app = create_app(ctx, watcher=False)
        routes = {(r.method, r.resource.canonical.rstrip("/")[len(ML):]) for r in app.router.routes()
                  if r.resource is not None and r.resource.canonical.startswith(ML + "/")}
    finally:
        ctx.close()
    table = {(row.method, row.route) for row in ROWS}
    assert sorted(routes - table) == [], "ML routes with no row in this table"
    assert sorted(table - routes) == [], "rows for routes that do not exist"
