"""Everything a core service needs to reach the cluster, built once per process."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import redis
from rq import Queue

from mlcommons.core.remote.secrets import MasterKey, master_key
from mlcommons.settings import Settings, static_values
from mlcommons.store import schema
from mlcommons.store.connection import sync_client
from mlcommons.store.documents import DocumentStore
from mlcommons.store.keys import Keys
from mlcommons.store.modelstore import ModelStore, RedisModelStore


@dataclass
class Context:
    redis_url: str
    redis: redis.Redis
    keys: Keys
    settings: Settings
    client_name: str | None = None

    @classmethod
    def connect(cls, redis_url: str, *, static: dict | None = None, auto_refresh: bool = True,
                client_name: str | None = None) -> "Context":
        """``client_name``: what this process's connections call themselves in Redis (a worker
        node's run, for fencing: mlcommons/core/nodes.py)."""
        static = static_values() if static is None else static
        client = sync_client(redis_url, **({"client_name": client_name} if client_name else {}))
        keys = Keys(static["mlcommons.redis.key_prefix"])
        settings = Settings(static, redis=client if auto_refresh else None, keys=keys)
        return cls(redis_url=redis_url, redis=client, keys=keys, settings=settings, client_name=client_name)

    @cached_property
    def docs(self) -> DocumentStore:
        return DocumentStore(self.redis, self.keys, check=schema.check)

    @cached_property
    def secrets(self) -> MasterKey:
        """The master key that seals connector credentials (a 400 naming the setting without one)."""
        return master_key(self.settings.get("mlcommons.security.master_key_file"))

    @cached_property
    def blobs(self) -> ModelStore:
        return RedisModelStore(self.redis, self.keys)

    def queue(self, name: str) -> Queue:
        from mlcommons.core.tasks.allowed import SERIALIZER, ProjectJob

        return Queue(name, connection=self.redis, serializer=SERIALIZER, job_class=ProjectJob,
                     default_timeout=self.settings.get("plugins.ml_commons.ml_task_timeout_in_seconds"))

    def close(self) -> None:
        self.redis.close()
