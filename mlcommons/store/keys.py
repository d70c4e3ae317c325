"""Every Redis key and rq queue name the system uses, in one place.

All keys start with the cluster's key prefix (setting ``mlcommons.redis.key_prefix``), so several
clusters can share one Redis. Nobody spells a key by hand elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass

# Logical document indices and the ML Commons system index each one stands for on the wire.
MODEL = "model"
MODEL_GROUP = "model_group"
TASK = "task"
DEPLOYMENT = "deployment"  # an Elasticsearch deployment with its own id (see mlcommons/core/serving/units.py)
CONNECTOR = "connector"  # an ML Commons connector (see mlcommons/core/remote/connectors.py)
ENDPOINT = "inference_endpoint"  # an Elasticsearch inference endpoint (see mlcommons/elasticsearch/endpoints.py)
USER = "security_user"  # a user of the native realm (see mlcommons/core/security/users.py)
API_KEY = "security_api_key"  # an Elasticsearch-style API key (see mlcommons/core/security/apikeys.py)
WIRE_INDEX = {
    MODEL: ".plugins-ml-model",
    MODEL_GROUP: ".plugins-ml-model-group",
    TASK: ".plugins-ml-task",
    CONNECTOR: ".plugins-ml-connector",
}


@dataclass(frozen=True)
class Keys:
    prefix: str = "mlc"

    # documents: a hash per document (JSON-encoded field values) and a sorted set per index
    def doc(self, index: str, doc_id: str) -> str:
        return f"{self.prefix}:doc:{index}:{doc_id}"

    def index(self, index: str) -> str:
        return f"{self.prefix}:idx:{index}"

    def unique(self, index: str, field: str) -> str:
        """Hash value -> doc id, for fields that must be unique (model group names)."""
        return f"{self.prefix}:uniq:{index}:{field}"

    # model store
    def chunk(self, model_id: str, number: int) -> str:
        return f"{self.prefix}:chunk:{model_id}:{number}"

    def chunk_index(self, model_id: str) -> str:
        """Hash chunk number -> size of the chunks stored for a model: what is there, so nothing
        ever loops over a count a client gave."""
        return f"{self.prefix}:chunks:{model_id}"

    def blob_meta(self, blob_id: str) -> str:
        """Description (chunks, hash, size, config) of a stored archive that is not a model."""
        return f"{self.prefix}:blob:{blob_id}"

    def blob_lock(self, blob_id: str) -> str:
        return f"{self.prefix}:lock:blob:{blob_id}"

    # tasks
    def open_tasks(self) -> str:
        """Set of the ids of tasks not yet in a terminal state (what time-outs and liveness scan)."""
        return f"{self.prefix}:open_tasks"

    def task_nodes(self, task_id: str) -> str:
        """Hash node id -> "" (success) or error message, filled as deploy nodes report."""
        return f"{self.prefix}:task:{task_id}:nodes"

    # nodes
    def nodes(self) -> str:
        """Set of every node id ever seen."""
        return f"{self.prefix}:nodes"

    def node(self, node_id: str) -> str:
        """Hash with the node's last heartbeat document."""
        return f"{self.prefix}:node:{node_id}"

    def node_alive(self, node_id: str) -> str:
        """String holding the node's boot id; expires when heartbeats stop."""
        return f"{self.prefix}:alive:{node_id}"

    # security
    def security_epoch(self) -> str:
        """A counter raised by every change of users and API keys: API processes drop what they
        remember of verified credentials when it moves."""
        return f"{self.prefix}:security:epoch"

    # cluster watcher
    def watcher_leader(self) -> str:
        return f"{self.prefix}:watcher:leader"

    def replication_marker(self) -> str:
        """A counter written just before a Redis WAIT, so that the WAIT covers the writes made
        before it on any connection (mlcommons/store/durability.py)."""
        return f"{self.prefix}:replication:marker"

    def watcher_state(self, name: str) -> str:
        """Hashes the watcher keeps between ticks and across leaders (boots seen, and so on)."""
        return f"{self.prefix}:watcher:{name}"

    def metrics(self, name: str) -> str:
        """Hashes of cluster-wide counters (mlcommons/metrics/): the API processes add their
        deltas about once a second; the auto-(re)deploys bump theirs."""
        return f"{self.prefix}:metrics:{name}"

    def deploy_progress(self, task_id: str) -> str:
        """Hash node id -> what that node is doing for a deploy task (downloading 3/10, loading)."""
        return f"{self.prefix}:task:{task_id}:progress"

    # settings
    def cluster_uuid(self) -> str:
        """The cluster's id, made by the first API process that is asked for it."""
        return f"{self.prefix}:cluster_uuid"

    def serving_events(self) -> str:
        """Pub/sub channel on which a serving unit's id is published whenever its deploy or its
        serving nodes change, so that waiters (``_start``'s wait_for, auto-deploy) need not poll."""
        return f"{self.prefix}:events:serving"

    def settings(self, scope: str) -> str:
        return f"{self.prefix}:settings:{scope}"

    # data plane
    def route(self, deployment_id: str) -> str:
        """Hash describing a deployment's serving state, read by queue admission."""
        return f"{self.prefix}:route:{deployment_id}"

    def predict_queue(self, deployment_id: str) -> str:
        return f"{self.prefix}:dq:{deployment_id}"

    def inflight(self, node_id: str, deployment_id: str, allocation: int) -> str:
        return f"{self.prefix}:inflight:{node_id}:{deployment_id}:{allocation}"

    def inflight_pattern(self, node_id: str) -> str:
        return f"{self.prefix}:inflight:{node_id}:*"

    def deployment_inflight_pattern(self, deployment_id: str) -> str:
        """Every node's and allocation's in-flight list of one deployment."""
        return f"{self.prefix}:inflight:*:{deployment_id}:*"

    def rate_limit(self, model_id: str) -> str:
        """Hash: a model's token bucket (tokens, ms of the last take), for the whole cluster."""
        return f"{self.prefix}:ratelimit:{model_id}"

    def replies(self, instance_id: str) -> str:
        """List of msgpack replies for one API process."""
        return f"{self.prefix}:reply:{instance_id}"

    def pending_undeploys(self) -> str:
        """Hash request id -> plan of the undeploys the watcher began and settles on a later round."""
        return f"{self.prefix}:pending_undeploys"

    def job_reply(self, request_id: str) -> str:
        """List an rq job pushes its result to when a caller waits on it (undeploy)."""
        return f"{self.prefix}:jobreply:{request_id}"

    # rq queues (names, not keys: rq adds its own ``rq:queue:`` prefix)
    def node_queue(self, node_id: str) -> str:
        return f"{self.prefix}.node.{node_id}"

    def shared_queue(self) -> str:
        return f"{self.prefix}.shared"
