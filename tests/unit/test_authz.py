"""The route table of security: every route the router has needs an action, and the table names
no route that does not exist; the role table gives each role what the issue says."""
from __future__ import annotations

from mlcommons.api.app import create_app
from mlcommons.api.authz import ROUTE_ACTIONS
from mlcommons.core.security import roles as R


def test_every_route_has_an_action_and_every_action_a_route(ctx):
    app = create_app(ctx, watcher=False)
    routes = set()
    for route in app.router.routes():
        method = "GET" if route.method == "HEAD" else route.method
        routes.add((method, route.resource.canonical.rstrip("/") or "/"))
    assert sorted(routes - set(ROUTE_ACTIONS)) == [], "routes without an action in api/authz.py"
    assert sorted(set(ROUTE_ACTIONS) - routes) == [], "actions for routes that do not exist"


def test_roles_grant_what_both_systems_grant():
    assert R.actions_of(["all_access"]) == frozenset(R.ACTIONS)
    full = R.actions_of(["ml_full_access"])
    assert {R.ML_READ, R.ML_WRITE, R.ML_INFER, R.INFERENCE_WRITE} <= full and R.ADMIN not in full
    read = R.actions_of(["ml_readonly_access"])
    assert R.ML_READ in read and R.ML_INFER not in read and R.ML_WRITE not in read
    # Elasticsearch: running a model is a monitor privilege
    assert R.ML_INFER in R.actions_of(["machine_learning_user"])
    assert R.ML_WRITE not in R.actions_of(["machine_learning_user"])
    assert R.INFERENCE_INFER in R.actions_of(["inference_user"]) and R.ML_READ not in R.actions_of(["inference_user"])
    assert R.actions_of(["no_such_role"]) == R.EVERYONE
