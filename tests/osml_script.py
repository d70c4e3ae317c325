"""Drives opensearch-py-ml's MLCommonClient against an mlcommons API, the way a user's script would.

Run by tests/osml.py with the python of ``.venv-osml`` (opensearch-py-ml and its own pins; no
torch, none of ours): ``python osml_script.py <base-url>``, one JSON object of steps on stdin, and
the results as one JSON object on the last line of stdout. The client prints as it goes; those
lines come first.

Phases (``"phase"`` in the steps):

- ``register`` (``model_path``, ``config_path``, ``texts``, ``name``): a model group, then the
  archive registered into it by chunked upload and deployed (waiting); it is read back, embedded,
  searched by name, its deploy task found and read, its profile asked, and a missing model asked.
- ``teardown`` (``model_id``, ``group_id``, ``task_id``): undeploy, delete the model, its deploy
  task and its group.
- ``connector`` (``connector``: a body): create, get, list, search and delete a connector.
"""
from __future__ import annotations

import json
import sys

from opensearch_py_ml.ml_commons import MLCommonClient
from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError


def _error(call) -> dict:
    """What a failing call raised: opensearch-py's exception class, status and error type."""
    try:
        call()
    except TransportError as exc:
        info = exc.info if isinstance(exc.info, dict) else {}
        return {"class": type(exc).__name__, "status": exc.status_code, "error": exc.error,
                "type": (info.get("error") or {}).get("type")}
    return {"class": None}


def register(ml: MLCommonClient, steps: dict) -> dict:
    groups = ml.model_access_control
    # The client's default access_mode ("private") is refused with access control off, as ML Commons does.
    out = {"private_group": _error(lambda: groups.register_model_group(steps["name"]))}
    group_id = groups.register_model_group(steps["name"], description="opensearch-py-ml's test group",
                                           access_mode=None)["model_group_id"]
    out["group_id"], out["group_by_name"] = group_id, groups.get_model_group_id_by_name(steps["name"])
    model_id = ml.register_model(steps["model_path"], steps["config_path"], model_group_id=group_id,
                                 isVerbose=True, deploy_model=True, wait_until_deployed=True)
    out.update(model_id=model_id, info=ml.get_model_info(model_id))
    out["embedding"] = ml.generate_embedding(model_id, steps["texts"])
    out["inference"] = ml.generate_model_inference(model_id, {"text_docs": steps["texts"][:1]})
    out["search"] = ml.search_model({"query": {"term": {"name.keyword": {"value": steps["name"]}}}})
    # the deploy's task, found as a user finds it, then read on its own
    tasks = ml.search_task({"query": {"bool": {"must": [{"term": {"model_id": model_id}},
                                                         {"term": {"task_type": "DEPLOY_MODEL"}}]}}})
    out["deploy_tasks"] = tasks
    out["task"] = ml.get_task_info(tasks["hits"]["hits"][0]["_id"], wait_until_task_done=False)
    out["profile"] = ml.get_profile(profile_type="model", ids=[model_id])
    out["missing"] = _error(lambda: ml.get_model_info("no-such-model-" + model_id))
    return out


def teardown(ml: MLCommonClient, steps: dict) -> dict:
    model_id, group_id = steps["model_id"], steps["group_id"]
    out = {"undeploy": ml.undeploy_model(model_id)}
    out["after_undeploy"] = ml.get_model_info(model_id)
    out["delete"] = ml.delete_model(model_id)
    out["after_delete"] = _error(lambda: ml.get_model_info(model_id))
    out["delete_task"] = ml.delete_task(steps["task_id"])
    out["delete_group"] = ml.model_access_control.delete_model_group(group_id)
    out["group_after_delete"] = _error(lambda: ml.model_access_control.delete_model_group(group_id))
    return out


def connector(ml: MLCommonClient, steps: dict) -> dict:
    connectors = ml.connector
    connector_id = connectors.create_standalone_connector(body=steps["connector"])["connector_id"]
    out = {"connector_id": connector_id, "get": connectors.get_connector(connector_id)}
    out["listed"] = connectors.list_connectors()
    out["searched"] = connectors.search_connectors({"query": {"term": {"name.keyword": steps["connector"]["name"]}}})
    out["delete"] = connectors.delete_connector(connector_id)
    out["after_delete"] = _error(lambda: connectors.get_connector(connector_id))
    return out


def main() -> None:
    base = sys.argv[1]
    steps = json.loads(sys.stdin.read())
    client = OpenSearch(hosts=[base], use_ssl=False, verify_certs=False, timeout=120, max_retries=0)
    ml = MLCommonClient(client)
    phases = {"register": register, "teardown": teardown, "connector": connector}
    result = phases[steps["phase"]](ml, steps)
    client.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
