"""Model and connector access control, as ML Commons has it (``model_access_control_enabled``,
``connector_access_control_enabled``; security on).

A model group (and a connector) has an owner, an ``access`` mode and ``backend_roles``:
``public`` (everyone), ``private`` (its owner) or ``restricted`` (users who share one of its
backend roles). A model is reached through its group. Administrators (``all_access``) reach
everything, and so does everyone for what was made before access control (no owner). The words
are ML Commons' (MLModelGroupManager, ModelAccessControlHelper, ConnectorAccessControlHelper).

The user is the request's, set by the API's security middleware in :data:`CURRENT`; the API's
thread pool runs core calls in a copy of the request's context, so :func:`current` is right there
too. With security off it is None, and nothing here refuses anything.
"""
from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Iterable

from mlcommons.core.context import Context
from mlcommons.core.security import roles
from mlcommons.core.security.authn import Principal
from mlcommons.errors import BadRequest, Forbidden
from mlcommons.store import keys as K

CURRENT: ContextVar[Principal | None] = ContextVar("mlcommons_principal", default=None)
MODES = ("public", "private", "restricted")
FIELDS = ("access_mode", "backend_roles", "add_all_backend_roles")
DISABLED = ("You cannot specify model access control parameters because the Security plugin or model access "
            "control is disabled on your cluster.")
CONNECTOR_DISABLED = ("You cannot specify connector access control parameters because the Security plugin or "
                      "connector access control is disabled on your cluster.")
NO_GROUP_PRIVILEGE = "User doesn't have valid privilege to perform this operation on this model group"
NO_MODEL_PRIVILEGE = "User doesn't have privilege to perform this operation on this model"
NO_CONNECTOR_PRIVILEGE = "You don't have permission to access this connector"
OWNER_ONLY = "Only owner or admin can update access control data."


def current() -> Principal | None:
    return CURRENT.get()


def models_on(ctx: Context) -> bool:
    return bool(ctx.settings.get("mlcommons.security.enabled")
                and ctx.settings.get("plugins.ml_commons.model_access_control_enabled"))


def connectors_on(ctx: Context) -> bool:
    return bool(ctx.settings.get("mlcommons.security.enabled")
                and ctx.settings.get("plugins.ml_commons.connector_access_control_enabled"))


def _given(body: dict[str, Any]) -> bool:
    return any(body.get(f) not in (None, [], False) for f in FIELDS) or body.get("model_access_mode") is not None


def owner(user: Principal) -> dict[str, Any]:
    return {"name": user.username, "backend_roles": list(user.backend_roles), "roles": list(user.roles),
            "custom_attribute_names": []}


def acl_of(on: bool, body: dict[str, Any], what: str = "model group") -> dict[str, Any] | None:
    """The access fields a new group (or connector) gets from ``body``: None when access
    control is off (and then any such field is refused, as ML Commons refuses it)."""
    user = current()
    if not on or user is None:
        if _given(body):
            raise BadRequest(DISABLED if what == "model group" else CONNECTOR_DISABLED)
        return None
    mode = body.get("access_mode", body.get("model_access_mode"))
    given = body.get("backend_roles") or []
    add_all = body.get("add_all_backend_roles") is True
    if not isinstance(given, list) or not all(isinstance(r, str) and 0 < len(r) <= 128 for r in given) \
            or len(given) > 100:
        raise BadRequest("[backend_roles] must be a list of at most 100 role names")
    admin = roles.is_admin(user.roles)
    if given and add_all:
        raise BadRequest("You cannot specify backend roles and add_all_backend_roles=true at the same time.")
    if admin and add_all:
        raise BadRequest(f"Admin users cannot add all backend roles to a {what}.")
    if mode is None:
        mode = "restricted" if given or add_all else "private"
    if not isinstance(mode, str) or mode.lower() not in MODES:
        raise BadRequest(f"Wrong access mode [{str(mode)[:64]}]: use one of {list(MODES)}")
    mode = mode.lower()
    if mode != "restricted" and (given or add_all):
        raise BadRequest(f"You can specify backend roles only for a {what} with the restricted access mode.")
    if mode == "restricted":
        if not given and not add_all:
            raise BadRequest(f"You must specify at least one backend role or make the {what} public.")
        if add_all:
            if not user.backend_roles:
                raise BadRequest("You don't have any backend roles.")
            given = list(user.backend_roles)
        elif not admin and not set(given) <= set(user.backend_roles):
            raise BadRequest("You don't have the backend roles specified.")
    return {"access": mode, "backend_roles": list(dict.fromkeys(given)), "owner": owner(user)}


def may_use(doc: dict[str, Any] | None, user: Principal | None = None) -> bool:
    """Whether the request's user may see and use a group or connector document."""
    user = user or current()
    if user is None or doc is None or roles.is_admin(user.roles):
        return True
    holder = (doc.get("owner") or {}).get("name")
    if holder is None or holder == user.username:
        return True
    access = doc.get("access", "public")
    if access == "public":
        return True
    if access == "restricted":
        return bool(set(doc.get("backend_roles") or ()) & set(user.backend_roles))
    return False


def is_owner_or_admin(doc: dict[str, Any]) -> bool:
    user = current()
    if user is None or roles.is_admin(user.roles):
        return True
    holder = (doc.get("owner") or {}).get("name")
    return holder is None or holder == user.username


def check_group(ctx: Context, group: dict[str, Any] | None) -> None:
    if models_on(ctx) and not may_use(group):
        raise Forbidden(NO_GROUP_PRIVILEGE)


def check_model(ctx: Context, model: dict[str, Any]) -> None:
    """Refuse (403) a model whose group the user may not use."""
    if not models_on(ctx) or current() is None:
        return
    group_id = model.get("model_group_id")
    group = ctx.docs.get(K.MODEL_GROUP, group_id) if group_id else None
    if not may_use(group):
        raise Forbidden(NO_MODEL_PRIVILEGE)


def check_connector(ctx: Context, connector: dict[str, Any]) -> None:
    if connectors_on(ctx) and not may_use(connector):
        raise Forbidden(NO_CONNECTOR_PRIVILEGE)


def visible_groups(ctx: Context, groups: dict[str, dict[str, Any]]) -> set[str] | None:
    """The ids of the groups the user may use (None: no filtering)."""
    if not models_on(ctx) or current() is None:
        return None
    return {gid for gid, doc in groups.items() if may_use(doc)}


def check_model_id(ctx: Context, model_id: str) -> None:
    """:func:`check_model` for a model known by id (nothing to check for one that does not exist:
    the operation answers its own 404)."""
    if not models_on(ctx) or current() is None:
        return
    model = ctx.docs.get(K.MODEL, model_id)
    if model is not None:
        check_model(ctx, model)


def visible_models(ctx: Context, docs: Iterable[tuple[str, dict]], groups: Iterable[tuple[str, dict]]
                   ) -> Iterable[tuple[str, dict]]:
    """``docs`` (id, model document) filtered to those whose group the user may use."""
    allowed = visible_groups(ctx, dict(groups))
    if allowed is None:
        return docs
    return ((i, d) for i, d in docs if not d.get("model_group_id") or d["model_group_id"] in allowed)
