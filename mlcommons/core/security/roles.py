"""Roles, the privileges they hold, and the actions a privilege allows: one table for both
dialects.

A route needs one action (api/authz.py maps every route to one). The roles carry both systems'
names: OpenSearch's security plugin has ``all_access``, ``ml_full_access`` and
``ml_readonly_access``; Elasticsearch has ``machine_learning_admin``, ``machine_learning_user``,
``inference_admin`` and ``inference_user`` over its cluster privileges ``manage_ml``,
``monitor_ml``, ``manage_inference`` and ``monitor_inference``. As in Elasticsearch, running a
model (``_infer``, ``POST _inference``) is a *monitor* action; as in ML Commons,
``ml_readonly_access`` may get, search and read stats and profiles but not predict.
"""
from __future__ import annotations

import functools

# Actions, the unit a route needs.
ML_READ = "ml:read"              # get, search, stats, profile, tasks
ML_INFER = "ml:infer"            # _predict, _infer
ML_WRITE = "ml:write"            # register, deploy, undeploy, update, delete, connectors, groups
INFERENCE_READ = "inference:read"
INFERENCE_INFER = "inference:infer"
INFERENCE_WRITE = "inference:write"
CLUSTER_READ = "cluster:read"    # the root, _nodes, _cluster/health
SELF = "self"                    # who am I, my own API keys
ADMIN = "admin"                  # cluster settings, users, anyone's API keys
PUBLIC = "public"                # answered without credentials
ACTIONS = (ML_READ, ML_INFER, ML_WRITE, INFERENCE_READ, INFERENCE_INFER, INFERENCE_WRITE, CLUSTER_READ, SELF,
           ADMIN, PUBLIC)

PRIVILEGES: dict[str, frozenset[str]] = {
    "all": frozenset(ACTIONS),
    "manage_ml": frozenset({ML_READ, ML_INFER, ML_WRITE}),
    "monitor_ml": frozenset({ML_READ, ML_INFER}),
    "manage_inference": frozenset({INFERENCE_READ, INFERENCE_INFER, INFERENCE_WRITE}),
    "monitor_inference": frozenset({INFERENCE_READ, INFERENCE_INFER}),
    "ml_read": frozenset({ML_READ, INFERENCE_READ}),
}
# Every authenticated user may read the cluster's face and manage their own keys.
EVERYONE = frozenset({CLUSTER_READ, SELF, PUBLIC})

ROLES: dict[str, tuple[str, ...]] = {
    "all_access": ("all",),
    "superuser": ("all",),
    "ml_full_access": ("manage_ml", "manage_inference"),
    "ml_readonly_access": ("ml_read",),
    "machine_learning_admin": ("manage_ml", "manage_inference"),
    "machine_learning_user": ("monitor_ml", "monitor_inference"),
    "inference_admin": ("manage_inference",),
    "inference_user": ("monitor_inference",),
}


def actions_of(roles: list[str] | tuple[str, ...]) -> frozenset[str]:
    """What ``roles`` allow together (asked on every request with security on: remembered)."""
    return _actions(tuple(roles))


@functools.lru_cache(maxsize=1024)
def _actions(roles: tuple[str, ...]) -> frozenset[str]:
    allowed = set(EVERYONE)
    for role in roles:
        for privilege in ROLES.get(role, ()):
            allowed |= PRIVILEGES[privilege]
    return frozenset(allowed)


def is_admin(roles: list[str] | tuple[str, ...]) -> bool:
    return ADMIN in actions_of(roles)


def unknown_roles(roles: list[str]) -> list[str]:
    return [r for r in roles if r not in ROLES]
