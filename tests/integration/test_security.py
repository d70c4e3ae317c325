"""Security on: every route of the router, walked with no credentials, a wrong password, a
read-only user, a full-access user, an API key and an invalidated key, answers what the role table
says; users and API keys through the API; the audit log; and Elasticsearch's client configured as
its users configure it."""
from __future__ import annotations

import base64
import json
import re

import pytest

from mlcommons.api.authz import ROUTE_ACTIONS
from mlcommons.core.security import roles
from tests.cluster import LocalCluster
from tests.harness import Client

ADMIN_PASSWORD = "admin-pass-1"


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    work = tmp_path_factory.mktemp("secure")
    local = LocalCluster(work, ("node-s",), env={"MLCOMMONS_SECURITY_ENABLED": "true",
                                                  "MLCOMMONS_ADMIN_PASSWORD": ADMIN_PASSWORD,
                                                  "MLCOMMONS_MLCOMMONS_SECURITY_AUDIT_LOG": str(work / "audit.log")})
    try:
        local.start()
        local.admin = Client(local.api.base, basic("admin", ADMIN_PASSWORD))
        local.audit = work / "audit.log"
        for name, role in (("reader", "ml_readonly_access"), ("full", "ml_full_access"),
                           ("es-user", "machine_learning_user"), ("inf-user", "inference_user")):
            resp = local.admin.put(f"/_security/user/{name}", {"password": f"{name}-password", "roles": [role],
                                                               "backend_roles": [f"team-{name}"]})
            assert resp.status == 200 and resp.body == {"created": True}, resp.body
        yield local
    finally:  # a start that failed halfway leaves no worker behind either
        local.stop()


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "nope", path)


def test_every_route_answers_what_the_role_table_says(secure):
    base = secure.api.base
    full = Client(base, basic("full", "full-password"))
    key = full.post("/_security/api_key", {"name": "matrix"}).body
    dead = full.post("/_security/api_key", {"name": "dead"}).body
    assert full.delete("/_security/api_key", {"ids": [dead["id"]]}).body["invalidated_api_keys"] == [dead["id"]]
    who = {
        "nobody": ({}, set()),
        "wrong password": (basic("full", "not-the-password"), set()),
        "read-only user": (basic("reader", "reader-password"), roles.actions_of(["ml_readonly_access"])),
        "full-access user": (basic("full", "full-password"), roles.actions_of(["ml_full_access"])),
        "api key": ({"Authorization": f"ApiKey {key['encoded']}"}, roles.actions_of(["ml_full_access"])),
        "invalidated key": ({"Authorization": f"ApiKey {dead['encoded']}"}, set()),
        "elasticsearch ml user": (basic("es-user", "es-user-password"),
                                  roles.actions_of(["machine_learning_user"])),
        "admin": (basic("admin", ADMIN_PASSWORD), roles.actions_of(["all_access"])),
    }
    wrong = []
    for (method, path), action in sorted(ROUTE_ACTIONS.items()):
        for name, (headers, allowed) in who.items():
            body = None if method in ("GET", "DELETE") else {}
            resp = Client(base, headers).request(method, concrete(path), body)
            # OpenAI's routes answer in OpenAI's error shape (mlcommons/openai/handlers.py)
            openai = path.startswith("/v1/")
            if action == roles.PUBLIC:  # the API's description: answered to anyone, credentials or not
                expected, ok = "neither 401 nor 403", resp.status not in (401, 403)
            elif not allowed:
                expected = "401"
                ok = resp.status == 401 and "WWW-Authenticate" in resp.headers \
                    and resp.body["error"]["type"] == ("authentication_error" if openai else "security_exception")
            elif action in allowed:
                expected, ok = "neither 401 nor 403", resp.status not in (401, 403)
            else:
                expected = "403"
                ok = resp.status == 403 and resp.body["error"]["type"] == (
                    "permission_error" if openai else "security_exception")
            if not ok:
                wrong.append(f"{method} {path} as {name}: {resp.status} (expected {expected}) {str(resp.body)[:200]}")
    assert not wrong, "\n".join(wrong)


def test_the_denials_speak_each_dialect(secure):
    reader = Client(secure.api.base, basic("reader", "reader-password"))
    resp = reader.post("/_plugins/_ml/models/_register", {"name": "x"})
    assert resp.status == 403
    assert resp.body["error"]["reason"] == ("no permissions for [ml:write] and User [name=reader, "
                                            "backend_roles=[team-reader], requestedTenant=null]")
    resp = reader.put("/_inference/text_embedding/x", {"service": "elasticsearch"})
    assert resp.status == 403 and resp.body["error"]["reason"].startswith(
        "action [inference:write] is unauthorized for user [reader] with effective roles [ml_readonly_access], "
        "this action is granted by the cluster privileges [all,manage_inference]")
    resp = Client(secure.api.base).get("/_plugins/_ml/models/_search")
    assert resp.status == 401 and resp.body["error"]["reason"] == (
        "missing authentication credentials for REST request [/_plugins/_ml/models/_search]")
    assert resp.headers["WWW-Authenticate"].startswith('Basic realm="security"')


def test_who_am_i_in_both_dialects(secure):
    full = Client(secure.api.base, basic("full", "full-password"))
    me = full.get("/_security/_authenticate").body
    assert me["username"] == "full" and me["roles"] == ["ml_full_access"] and me["authentication_type"] == "realm"
    info = full.get("/_plugins/_security/authinfo").body
    assert info["user_name"] == "full" and info["backend_roles"] == ["team-full"]
    key = full.post("/_security/api_key", {"name": "whoami", "expiration": "1d"}).body
    assert set(key) == {"id", "name", "api_key", "encoded", "expiration"}
    assert base64.b64decode(key["encoded"]).decode() == f"{key['id']}:{key['api_key']}"
    by_key = Client(secure.api.base, {"Authorization": f"ApiKey {key['encoded']}"})
    me = by_key.get("/_security/_authenticate").body
    assert me["username"] == "full" and me["authentication_type"] == "api_key"
    assert me["api_key"] == {"id": key["id"], "name": "whoami"}


def test_api_keys_are_listed_to_their_owner_and_invalidated_at_once(secure):
    full = Client(secure.api.base, basic("full", "full-password"))
    reader = Client(secure.api.base, basic("reader", "reader-password"))
    mine = full.post("/_security/api_key", {"name": "owned"}).body
    listed = full.get("/_security/api_key").body["api_keys"]
    assert mine["id"] in [k["id"] for k in listed] and all(k["username"] == "full" for k in listed)
    assert "api_key" not in json.dumps(listed) or mine["api_key"] not in json.dumps(listed)
    assert mine["id"] not in [k["id"] for k in reader.get("/_security/api_key").body["api_keys"]]
    assert mine["id"] in [k["id"] for k in secure.admin.get("/_security/api_key").body["api_keys"]]
    # someone else's key cannot be invalidated by a user; its owner can, and it stops at once
    assert reader.delete("/_security/api_key", {"ids": [mine["id"]]}).body["invalidated_api_keys"] == []
    by_key = Client(secure.api.base, {"Authorization": f"ApiKey {mine['encoded']}"})
    assert by_key.get("/_plugins/_ml/models/_search").status == 200
    assert full.delete("/_security/api_key", {"ids": [mine["id"]]}).body["invalidated_api_keys"] == [mine["id"]]
    assert by_key.get("/_plugins/_ml/models/_search").status == 401
    shown = [k for k in full.get(f"/_security/api_key?id={mine['id']}").body["api_keys"]]
    assert shown[0]["invalidated"] is True


def test_users_are_managed_by_an_administrator_only(secure):
    admin, base = secure.admin, secure.api.base
    assert admin.put("/_security/user/temp", {"password": "short", "roles": []}).status == 400
    assert admin.put("/_security/user/temp", {"password": "long-enough", "roles": ["no_such_role"]}).status == 400
    assert admin.put("/_security/user/temp", {"password": "long-enough", "roles": ["ml_readonly_access"]}
                     ).body == {"created": True}
    shown = admin.get("/_security/user/temp").body["temp"]
    assert shown["roles"] == ["ml_readonly_access"] and "password" not in json.dumps(shown)
    temp = Client(base, basic("temp", "long-enough"))
    assert temp.get("/_plugins/_ml/models/_search").status == 200
    assert temp.get("/_security/user").status == 403
    # a new password takes effect at once; the old one no longer works
    assert admin.put("/_security/user/temp", {"password": "another-one"}).body == {"created": False}
    assert temp.get("/_plugins/_ml/models/_search").status == 401
    assert Client(base, basic("temp", "another-one")).get("/_plugins/_ml/models/_search").status == 200
    assert admin.delete("/_security/user/temp").body == {"found": True}
    assert Client(base, basic("temp", "another-one")).get("/").status == 401
    assert admin.get("/_security/user/temp").status == 404


def test_the_audit_log_records_failures_denials_and_changes(secure):
    Client(secure.api.base, basic("reader", "bad")).get("/")
    Client(secure.api.base, basic("reader", "reader-password")).put("/_cluster/settings", {"persistent": {}})
    secure.admin.put("/_cluster/settings", {"persistent": {"plugins.ml_commons.max_model_on_node": 10}})
    lines = [json.loads(line) for line in secure.audit.read_text().splitlines()]
    events = {(e["event"], e.get("user")) for e in lines}
    assert ("authentication_failed", None) in events
    assert ("access_denied", "reader") in events
    assert ("settings_changed", "admin") in events and ("user_created", "admin") in events
    assert all(e["source"] == "127.0.0.1" for e in lines)
    text = secure.audit.read_text()
    assert "reader-password" not in text and ADMIN_PASSWORD not in text


def test_elasticsearch_py_with_basic_auth_and_an_api_key(secure):
    from elasticsearch import AuthenticationException, AuthorizationException, Elasticsearch

    with Elasticsearch(secure.api.base, basic_auth=("es-user", "es-user-password")) as es:
        assert es.ml.get_trained_models()["count"] >= 0
        with pytest.raises(AuthorizationException):
            es.ml.delete_trained_model(model_id="nope")
    key = Client(secure.api.base, basic("full", "full-password")).post("/_security/api_key", {"name": "es"}).body
    with Elasticsearch(secure.api.base, api_key=key["encoded"]) as es:
        assert es.security.authenticate()["username"] == "full"
    with Elasticsearch(secure.api.base, basic_auth=("es-user", "wrong")) as es:
        with pytest.raises(AuthenticationException):
            es.ml.get_trained_models()


def remote_model(client: Client, name: str, group_id: str | None = None, connector_id: str | None = None):
    body = {"name": name, "function_name": "remote"}
    if group_id:
        body["model_group_id"] = group_id
    if connector_id:
        body["connector_id"] = connector_id
    else:
        body["connector"] = {"protocol": "http", "credential": {"key": "k"}, "actions": [{
            "action_type": "predict", "method": "POST", "url": "https://api.openai.com/v1/embeddings",
            "headers": {"Authorization": "Bearer ${credential.key}"}, "request_body": '{"input": ${parameters.input}}'}]}
    return client.post("/_plugins/_ml/models/_register", body)


def test_model_and_connector_access_control_across_two_teams(secure):
    ml = "/_plugins/_ml"
    admin, base = secure.admin, secure.api.base
    assert admin.put("/_cluster/settings", {"persistent": {
        "plugins.ml_commons.model_access_control_enabled": True,
        "plugins.ml_commons.connector_access_control_enabled": True}}).status == 200
    for name, team in (("alice", "team-a"), ("carol", "team-a"), ("bob", "team-b")):
        assert admin.put(f"/_security/user/{name}", {"password": f"{name}-password", "roles": ["ml_full_access"],
                                                     "backend_roles": [team]}).status == 200
    alice, carol, bob = (Client(base, basic(n, f"{n}-password")) for n in ("alice", "carol", "bob"))
    # ML Commons' refusals of a group's access fields
    for body, words in (({"access_mode": "restricted", "backend_roles": ["team-b"]},
                         "You don't have the backend roles specified."),
                        ({"access_mode": "restricted"}, "You must specify at least one backend role"),
                        ({"access_mode": "public", "backend_roles": ["team-a"]},
                         "You can specify backend roles only for a model group with the restricted access mode."),
                        ({"backend_roles": ["team-a"], "add_all_backend_roles": True},
                         "You cannot specify backend roles and add_all_backend_roles=true at the same time.")):
        resp = alice.post(f"{ml}/model_groups/_register", {"name": "refused", **body})
        assert resp.status == 400 and words in resp.body["error"]["reason"], resp.body
    groups = {}
    for mode, extra in (("private", {}), ("restricted", {"add_all_backend_roles": True}), ("public", {})):
        resp = alice.post(f"{ml}/model_groups/_register", {"name": f"alice-{mode}", "access_mode": mode, **extra})
        assert resp.status == 200, resp.body
        groups[mode] = resp.body["model_group_id"]
    shown = alice.get(f"{ml}/model_groups/{groups['restricted']}").body
    assert shown["access"] == "restricted" and shown["backend_roles"] == ["team-a"]
    assert shown["owner"]["name"] == "alice"
    models = {}
    for mode, group_id in groups.items():
        resp = remote_model(alice, f"model-{mode}", group_id)
        assert resp.status == 200, resp.body
        models[mode] = resp.body["model_id"]

    def visible(client: Client) -> set[str]:
        hits = client.post(f"{ml}/models/_search", {"query": {"match_all": {}}, "size": 100}).body["hits"]["hits"]
        return {h["_id"] for h in hits} & set(models.values())

    assert visible(alice) == set(models.values())
    assert visible(carol) == {models["restricted"], models["public"]}
    assert visible(bob) == {models["public"]}
    assert visible(admin) == set(models.values())
    group_hits = bob.post(f"{ml}/model_groups/_search", {"query": {"match_all": {}}}).body["hits"]["hits"]
    assert groups["public"] in {h["_id"] for h in group_hits} and groups["private"] not in {h["_id"] for h in group_hits}
    # bob reaches nothing of team a's but the public model, whatever he tries
    denied = "User doesn't have privilege to perform this operation on this model"
    for method, path, body in (("GET", f"{ml}/models/{models['private']}", None),
                               ("POST", f"{ml}/models/{models['restricted']}/_predict", {"text_docs": ["x"]}),
                               ("POST", f"{ml}/models/{models['private']}/_deploy", {}),
                               ("DELETE", f"{ml}/models/{models['restricted']}", None)):
        resp = bob.request(method, path, body)
        assert resp.status == 403 and resp.body["error"]["reason"] == denied, (method, path, resp.body)
    assert bob.get(f"{ml}/models/{models['public']}").status == 200
    resp = bob.get(f"{ml}/model_groups/{groups['private']}")
    assert resp.status == 403 and "model group" in resp.body["error"]["reason"]
    assert remote_model(bob, "intruder", groups["restricted"]).status == 403  # no versions in their group
    # only the owner (or an administrator) changes who may use a group
    resp = carol.put(f"{ml}/model_groups/{groups['restricted']}", {"access_mode": "public"})
    assert resp.status == 403 and resp.body["error"]["reason"] == "Only owner or admin can update access control data."
    assert alice.put(f"{ml}/model_groups/{groups['restricted']}", {"access_mode": "public"}).status == 200
    assert visible(bob) == {models["restricted"], models["public"]}
    # connectors
    connector = {"name": "alice's", "version": "1", "protocol": "http", "credential": {"key": "k"},
                 "access_mode": "private", "actions": [{"action_type": "predict", "method": "POST",
                                                        "url": "https://api.openai.com/v1/embeddings",
                                                        "request_body": '{"input": ${parameters.input}}'}]}
    connector_id = alice.post(f"{ml}/connectors/_create", connector).body["connector_id"]
    assert alice.get(f"{ml}/connectors/{connector_id}").status == 200
    resp = bob.get(f"{ml}/connectors/{connector_id}")
    assert resp.status == 403 and resp.body["error"]["reason"] == "You don't have permission to access this connector"
    hits = bob.post(f"{ml}/connectors/_search", {"query": {"match_all": {}}}).body["hits"]["hits"]
    assert connector_id not in {h["_id"] for h in hits}
    assert remote_model(bob, "borrowed", connector_id=connector_id).status == 403
    assert admin.get(f"{ml}/connectors/{connector_id}").status == 200
    assert admin.put("/_cluster/settings", {"persistent": {
        "plugins.ml_commons.model_access_control_enabled": None,
        "plugins.ml_commons.connector_access_control_enabled": None}}).status == 200


def test_openai_clients_authenticate_with_an_api_key_as_bearer(secure):
    """The OpenAI SDK sends its api_key as ``Bearer``: an API key's encoded form works there."""
    openai = pytest.importorskip("openai")
    full = Client(secure.api.base, basic("full", "full-password"))
    key = full.post("/_security/api_key", {"name": "openai-sdk"}).body
    good = openai.OpenAI(base_url=f"{secure.api.base}/v1", api_key=key["encoded"], max_retries=0)
    assert good.models.list().object == "list"
    bad = openai.OpenAI(base_url=f"{secure.api.base}/v1", api_key="bm90OmEta2V5", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
