"""Model groups: named families of model versions. Names are unique in the cluster. With model
access control on (core/security/access.py) a group has an owner, an access mode and backend roles,
and only those who may use it see it, add versions to it, or reach its models."""
from __future__ import annotations

from typing import Any, Iterator

from mlcommons.core import limits
from mlcommons.core.context import Context
from mlcommons.core.security import access
from mlcommons.errors import BadRequest, Conflict, Forbidden, NotFound
from mlcommons.ids import new_id, now_ms
from mlcommons.store import keys as K
from mlcommons.store.documents import Tx

ACL_FIELDS = ("access_mode", "model_access_mode", "backend_roles", "add_all_backend_roles")


def not_found(group_id: str) -> NotFound:
    return NotFound(f"Failed to find model group with the provided model group id: {group_id}")


def acl_of(ctx: Context, body: dict[str, Any]) -> dict[str, Any] | None:
    """The access fields a new group gets from ``body`` (None with access control off, when any
    access field is refused as ML Commons refuses it)."""
    return access.acl_of(access.models_on(ctx), body)


def _name_taken(tx: Tx, ctx: Context, name: str) -> str | None:
    owner = tx.hgetall(ctx.keys.unique(K.MODEL_GROUP, "name")).get(name.encode())
    return owner.decode() if owner else None


def create_in(tx: Tx, ctx: Context, name: str, description: str | None = None,
              acl: dict[str, Any] | None = None) -> str:
    """Create a group inside a transaction (the caller checked the name is free)."""
    group_id = new_id()
    now = now_ms()
    doc = {"name": name, "latest_version": 0, "description": description, "access": "public",
           "created_time": now, "last_updated_time": now, **(acl or {})}
    tx.put(K.MODEL_GROUP, group_id, doc, created=now)
    tx.call(lambda p: p.hset(ctx.keys.unique(K.MODEL_GROUP, "name"), name, group_id))
    return group_id


def register(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    acl = acl_of(ctx, body)
    if body.get("name") is None:
        raise BadRequest("model group name is required: [name] must be a non-empty string")
    name = limits.name(body["name"])
    description = body.get("description")
    if description is not None:
        limits.description(description)

    def tx_body(tx: Tx):
        owner = _name_taken(tx, ctx, name)
        if owner is not None:
            raise BadRequest(f"The name you provided is already being used by a model group with ID: {owner}.")
        return create_in(tx, ctx, name, description, acl)

    group_id = ctx.docs.transact(tx_body)
    return {"model_group_id": group_id, "status": "CREATED"}


def get(ctx: Context, group_id: str) -> dict[str, Any]:
    group = ctx.docs.get(K.MODEL_GROUP, group_id)
    if group is None:
        raise not_found(group_id)
    access.check_group(ctx, group)
    return group


def all_docs(ctx: Context) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every model group document, as (id, document)."""
    return ctx.docs.all(K.MODEL_GROUP)


def update(ctx: Context, group_id: str, body: dict[str, Any]) -> dict[str, Any]:
    changes_acl = any(body.get(f) not in (None, [], False) for f in ACL_FIELDS)
    acl = acl_of(ctx, body) if changes_acl else None
    allowed = {"name", "description", *(ACL_FIELDS if acl else ())}
    for field in body:
        if field not in allowed:
            raise BadRequest(f"[{field}] cannot be updated on a model group; updatable fields: {sorted(allowed)}")
    name = body.get("name")
    if name is not None:
        limits.name(name)
    if body.get("description") is not None:
        limits.description(body["description"])

    def tx_body(tx: Tx):
        group = tx.get(K.MODEL_GROUP, group_id)
        if group is None:
            raise not_found(group_id)
        access.check_group(ctx, group)
        fields: dict[str, Any] = {"last_updated_time": now_ms()}
        if acl is not None:
            if not access.is_owner_or_admin(group):
                raise Forbidden(access.OWNER_ONLY)
            fields.update(access=acl["access"], backend_roles=acl["backend_roles"])
        if name is not None and name != group["name"]:
            owner = _name_taken(tx, ctx, name)
            if owner is not None and owner != group_id:
                raise BadRequest(f"The name you provided is already being used by a model group with ID: {owner}.")
            old = group["name"]
            tx.call(lambda p: p.hdel(ctx.keys.unique(K.MODEL_GROUP, "name"), old))
            tx.call(lambda p: p.hset(ctx.keys.unique(K.MODEL_GROUP, "name"), name, group_id))
            fields["name"] = name
        if "description" in body:
            fields["description"] = body["description"]
        tx.update(K.MODEL_GROUP, group_id, fields)

    ctx.docs.transact(tx_body)
    return {"status": "Updated"}


def models_in(ctx: Context, group_id: str) -> list[str]:
    return [i for i, d in ctx.docs.all(K.MODEL) if d.get("model_group_id") == group_id]


def delete(ctx: Context, group_id: str) -> None:
    def tx_body(tx: Tx):
        group = tx.get(K.MODEL_GROUP, group_id)
        if group is None:
            raise not_found(group_id)
        access.check_group(ctx, group)
        if access.models_on(ctx) and not access.is_owner_or_admin(group):
            raise Forbidden(access.NO_GROUP_PRIVILEGE)
        # Registering a model into a group bumps latest_version under this watch, so a model
        # arriving concurrently makes this transaction retry and then see it.
        if models_in(ctx, group_id):
            raise Conflict("Cannot delete the model group when it has associated model versions")
        tx.delete(K.MODEL_GROUP, group_id)
        name = group["name"]
        tx.call(lambda p: p.hdel(ctx.keys.unique(K.MODEL_GROUP, "name"), name))

    ctx.docs.transact(tx_body)


def take_version(tx: Tx, ctx: Context, name: str, group_id: str | None,
                 acl: dict[str, Any] | None = None) -> tuple[str, str, bool]:
    """Inside a register transaction: find (or create, with ``acl``) the group and take its next
    version. Returns (group_id, version, created)."""
    created = False
    if group_id:
        group = tx.get(K.MODEL_GROUP, group_id)
        if group is None:
            raise not_found(group_id)
        access.check_group(ctx, group)
    else:
        group_id = _name_taken(tx, ctx, name)
        group = tx.get(K.MODEL_GROUP, group_id) if group_id else None
        if group is None:
            group_id = create_in(tx, ctx, name, acl=acl)
            group = {"latest_version": 0}
            created = True
        else:
            access.check_group(ctx, group)
    version = int(group.get("latest_version", 0)) + 1
    tx.update(K.MODEL_GROUP, group_id, {"latest_version": version, "last_updated_time": now_ms()})
    return group_id, str(version), created


def release_version(ctx: Context, group_id: str, version: str, created: bool) -> None:
    """Undo :func:`take_version` after a failed registration: delete a group this registration
    created if it holds nothing else, or give the version back if it is still the latest."""
    def tx_body(tx: Tx):
        group = tx.get(K.MODEL_GROUP, group_id)
        if group is None:
            return
        if created and not models_in(ctx, group_id):
            tx.delete(K.MODEL_GROUP, group_id)
            name = group["name"]
            tx.call(lambda p: p.hdel(ctx.keys.unique(K.MODEL_GROUP, "name"), name))
        elif str(group.get("latest_version")) == version:
            tx.update(K.MODEL_GROUP, group_id, {"latest_version": int(version) - 1})

    ctx.docs.transact(tx_body)
