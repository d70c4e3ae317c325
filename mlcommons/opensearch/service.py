"""The OpenSearch dialect's facade: one coroutine per thing a handler asks of the core.

Each runs the synchronous core in the API's thread pool (``Services.run``) and returns documents,
versions or core results; the handlers render them (``opensearch/responses.py``). Searches run
the DSL here, over the public view of each document, since what a client may match on is what it
can see.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

from mlcommons.core.models import groups as model_groups
from mlcommons.core.models import records as models
from mlcommons.core.models import register as registration
from mlcommons.core.remote import connectors
from mlcommons.core.security import access
from mlcommons.core.serving import deploy as deploys
from mlcommons.core.serving import undeploy as undeploys
from mlcommons.core.tasks import records as tasks
from mlcommons.errors import BadRequest
from mlcommons.opensearch import profile, responses
from mlcommons.opensearch import search as dsl
from mlcommons.store import keys as K


class OpenSearchService:
    def __init__(self, svc):
        self._svc = svc
        self._ctx = svc.ctx
        self._call = svc.call  # a core function, given the context first, in the thread pool
        self.settings = svc.settings

    def _search(self, index: str, docs: Iterator[tuple[str, dict]], render: Callable, body: dict | None) -> dict:
        return dsl.search(((i, render(d)) for i, d in docs), body, index=K.WIRE_INDEX[index],
                          timeout=self.settings.get("mlcommons.search.timeout_seconds"))

    # --- models ---------------------------------------------------------------------------

    async def register_model(self, body: dict[str, Any], deploy: bool) -> dict[str, Any]:
        return await self._call(registration.register, body, deploy=deploy)

    async def register_meta(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(models.register_meta, body)

    async def upload_chunk(self, model_id: str, number: int, data: bytes) -> dict[str, Any]:
        return await self._call(models.upload_chunk, model_id, number, data)

    async def _may_use_models(self, model_ids: list[str]) -> None:
        """With model access control on, 403 for a model whose group the user may not use."""
        if access.models_on(self._ctx) and access.current() is not None:
            for model_id in model_ids:
                await self._call(access.check_model_id, model_id)

    async def model(self, model_id: str) -> dict[str, Any]:
        doc = await self._call(models.get_doc, model_id)
        await self._call(access.check_model, doc)
        return doc

    async def search_models(self, body: dict | None) -> dict:
        def run() -> dict:
            # Hidden models (those that serve Elasticsearch endpoints of external services) are not listed.
            visible = ((i, d) for i, d in models.all_docs(self._ctx) if not d.get("is_hidden"))
            if access.models_on(self._ctx):
                visible = access.visible_models(self._ctx, visible, model_groups.all_docs(self._ctx))
            return self._search(K.MODEL, visible, responses.public_model, body)
        return await self._svc.run(run)

    async def update_model(self, model_id: str, body: dict[str, Any]) -> int:
        await self._may_use_models([model_id])
        try:
            return await self._call(models.update, model_id, body)
        finally:
            self._svc.models.forget(model_id)

    async def delete_model(self, model_id: str) -> int:
        await self._may_use_models([model_id])
        try:
            return await self._call(models.delete, model_id)
        finally:
            self._svc.models.forget(model_id)

    async def deploy(self, model_id: str, node_ids: list[str] | None) -> dict[str, Any]:
        await self._may_use_models([model_id])
        return await self._call(deploys.deploy, model_id, node_ids)

    async def undeploy(self, model_ids: list[str], node_ids: list[str] | None) -> dict[str, Any]:
        """Ask each node that holds the models to drop them, wait for their replies (up to
        ``mlcommons.undeploy.timeout_seconds``) and settle the documents."""
        if node_ids and not self.settings.get("plugins.ml_commons.allow_custom_deployment_plan"):
            raise BadRequest("Don't allow custom deployment plan")
        await self._may_use_models(model_ids)
        plan = await self._call(undeploys.plan, model_ids, node_ids)
        try:
            replies = await self._svc.wait_job_replies(plan["request_id"], len(plan["nodes"]),
                                                       self.settings.get("mlcommons.undeploy.timeout_seconds"))
            return await self._call(undeploys.finish, plan, replies)
        finally:
            for model_id in model_ids:
                self._svc.models.forget(model_id)

    # --- model groups -----------------------------------------------------------------------

    async def register_group(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(model_groups.register, body)

    async def group(self, group_id: str) -> dict[str, Any]:
        return await self._call(model_groups.get, group_id)

    async def search_groups(self, body: dict | None) -> dict:
        def run() -> dict:
            found = model_groups.all_docs(self._ctx)
            if access.models_on(self._ctx):
                found = ((i, d) for i, d in found if access.may_use(d))
            return self._search(K.MODEL_GROUP, found, responses.public_group, body)
        return await self._svc.run(run)

    async def update_group(self, group_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(model_groups.update, group_id, body)

    async def delete_group(self, group_id: str) -> None:
        await self._call(model_groups.delete, group_id)

    # --- connectors -----------------------------------------------------------------------------

    async def create_connector(self, body: dict[str, Any]) -> str:
        return await self._call(connectors.create, body)

    async def connector(self, connector_id: str) -> dict[str, Any]:
        return await self._call(connectors.get, connector_id)

    async def search_connectors(self, body: dict | None) -> dict:
        def run() -> dict:
            found = connectors.all_docs(self._ctx)
            if access.connectors_on(self._ctx):
                found = ((i, d) for i, d in found if access.may_use(d))
            return self._search(K.CONNECTOR, found, responses.public_connector, body)
        return await self._svc.run(run)

    async def update_connector(self, connector_id: str, body: dict[str, Any]) -> int:
        return await self._call(connectors.update, connector_id, body)

    async def delete_connector(self, connector_id: str) -> int | None:
        return await self._call(connectors.delete, connector_id)

    # --- tasks and profile --------------------------------------------------------------------

    async def task(self, task_id: str) -> dict[str, Any]:
        return await self._call(tasks.get, task_id)

    async def search_tasks(self, body: dict | None) -> dict:
        return await self._svc.run(lambda: self._search(K.TASK, tasks.all_docs(self._ctx),
                                                        responses.public_task, body))

    async def delete_task(self, task_id: str) -> None:
        await self._call(tasks.delete, task_id)

    async def profile(self, model_filter: list[str] | None, node_filter: list[str] | None, view: str) -> dict:
        return await self._call(profile.profile, model_filter, node_filter, view)

    # --- predictions --------------------------------------------------------------------------

    async def model_info(self, model_id: str) -> dict[str, Any]:
        """The few fields the prediction path needs (cached for a second); 404 if unknown."""
        return await self._svc.model_info(model_id)

    async def predict(self, model_id: str, info: dict[str, Any], kind: str, texts: list[str] | None,
                      query: str | None = None, parameters: dict | None = None):
        """Run one prediction (``kind``: embed, sparse or similarity) within
        ``mlcommons.predict.timeout_seconds``, waking a deployment scaled to zero and deploying a
        model nobody serves first (auto-deploy on the first predict)."""
        await self._may_use_models([model_id])
        if info.get("bucket") is not None:
            await self._svc.take_token(model_id, info["bucket"])
        return await self._svc.infer(model_id, kind, texts, query=query, parameters=parameters,
                                     asleep=info["asleep"], auto_deploy=True)
