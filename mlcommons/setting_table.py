"""Every setting, documented once: its name, default, type, whether it is dynamic, and what it
does (mlcommons/settings.py resolves values; config/mlcommons.yml is generated from this table)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from mlcommons.errors import BadRequest


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    kind: type
    dynamic: bool
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    def parse(self, raw: Any) -> Any:
        """Turn a value from YAML, the environment or a JSON body into this setting's type."""
        try:
            value = _coerce(self.kind, raw)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"Failed to parse value [{raw}] for setting [{self.name}]: {exc}") from None
        if self.minimum is not None and value < self.minimum:
            raise BadRequest(f"Failed to parse value [{raw}] for setting [{self.name}] must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise BadRequest(f"Failed to parse value [{raw}] for setting [{self.name}] must be <= {self.maximum}")
        if self.choices is not None and value not in self.choices:
            raise BadRequest(f"Failed to parse value [{raw}] for setting [{self.name}]: "
                             f"must be one of [{', '.join(self.choices)}]")
        if self.kind is str and self.name.endswith("_regex"):
            try:
                re.compile(value)
            except re.error as exc:
                raise BadRequest(f"Failed to parse value [{raw}] for setting [{self.name}]: {exc}") from None
        if self.kind is list and self.name.endswith("_regex"):
            for pattern in value:
                _check_pattern(pattern)
        return value


# A pattern an administrator gives is still bounded: ML Commons' limits and words.
_NESTED_QUANTIFIER = re.compile(r"\([^()]*[+*}][^()]*\)[+*{]|\\[1-9]")


def _check_pattern(pattern: str) -> None:
    if len(pattern) > 256:
        raise BadRequest(f"Regex pattern too long (max 256 chars): {pattern[:300]}")
    if _NESTED_QUANTIFIER.search(pattern):
        raise BadRequest(f"Regex pattern contains nested quantifiers or backreferences that may cause ReDoS: {pattern}")
    try:
        re.compile(pattern)
    except re.error:
        raise BadRequest(f"Invalid regex pattern: {pattern}") from None


def _coerce(kind: type, raw: Any) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        raise ValueError("expected true or false")
    if kind is int:
        if isinstance(raw, bool):
            raise ValueError("expected an integer")
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError("expected an integer")
        return int(str(raw).strip()) if not isinstance(raw, (int, float)) else int(raw)
    if kind is float:
        if isinstance(raw, bool):
            raise ValueError("expected a number")
        return float(raw)
    if kind is str:
        if isinstance(raw, (dict, list)):
            raise ValueError("expected a string")
        return str(raw)
    if kind is list:  # of strings: a list, or its JSON text (from the environment)
        if isinstance(raw, str):
            raw = orjson.loads(raw) if raw.strip().startswith("[") else [raw]
        if not isinstance(raw, (list, tuple)) or len(raw) > 100 or not all(isinstance(v, str) for v in raw):
            raise ValueError("expected a list of at most 100 strings")
        return list(raw)
    raise TypeError(f"unsupported setting type {kind}")


_ML = "plugins.ml_commons."
# ML Commons' default trusted connector endpoints (MLCommonsSettings).
TRUSTED_CONNECTOR_ENDPOINTS = (
    r"^https://runtime\.sagemaker\..*[a-z0-9-]\.amazonaws\.com/.*$",
    r"^https://api\.sagemaker\..*[a-z0-9-]\.amazonaws\.com/.*$",
    r"^https://api\.openai\.com/.*$",
    r"^https://api\.cohere\.ai/.*$",
    r"^https://api\.deepseek\.com/.*$",
    r"^https://generativelanguage\.googleapis\.com/.*$",
    r"^https://bedrock-runtime\..*[a-z0-9-]\.amazonaws\.com/.*$",
    r"^https://bedrock-agent-runtime\..*[a-z0-9-]\.amazonaws\.com/.*$",
    r"^https://bedrock\..*[a-z0-9-]\.amazonaws\.com/.*$",
    r"^https://textract\..*[a-z0-9-]\.amazonaws\.com$",
    r"^https://comprehend\..*[a-z0-9-]\.amazonaws\.com$",
    r"^https://rekognition(-fips)?\..*[a-z0-9-]\.amazonaws\.com$",
)

SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        # --- the cluster and its storage -------------------------------------------------
        Setting("cluster.name", "mlcommons", str, False,
                "Name reported by GET / and in node documents."),
        Setting("mlcommons.redis.key_prefix", "mlc", str, False,
                "Prefix of every Redis key and rq queue name, so several clusters can share one Redis."),
        Setting("mlcommons.redis.embedded_maxmemory", 0, int, False,
                "Memory ceiling (maxmemory, in bytes, no eviction) of the Redis that serve embeds when no "
                "Redis URL is given; 0 = half of the machine's memory. Registers and uploads that would take "
                "the model store past 90% of any Redis' ceiling are refused with a clear error.", minimum=0),
        Setting("mlcommons.redis.appendfsync", "everysec", str, False,
                "How often the Redis that serve embeds writes its append-only file to disk: everysec (a "
                "crash of the machine may lose the last second of writes), always (nothing acknowledged is "
                "lost, each write waits for the disk) or no (the OS decides; a machine crash may lose more). "
                "A crash of Redis alone loses nothing in any mode."),
        Setting("mlcommons.redis.wait_replicas", 0, int, True,
                "Replicas that must acknowledge the writes that must not be lost to asynchronous "
                "replication (a created task, a registered model, an uploaded chunk) before the request "
                "answers: after such a write the process sends Redis WAIT. 0 = do not wait. For a primary "
                "with replicas (under Redis Sentinel, redis+sentinel:// URLs): 1 keeps them across a "
                "failover. Fewer acknowledgements within wait_timeout_ms log a warning and the request "
                "still succeeds (the write is on the primary; failing it would invite a duplicate).",
                minimum=0, maximum=5),
        Setting("mlcommons.redis.wait_timeout_ms", 1000, int, True,
                "How long, in milliseconds, a write waits for mlcommons.redis.wait_replicas replicas to "
                "acknowledge it before it answers anyway, with a warning in the log.",
                minimum=1, maximum=10_000),
        Setting("mlcommons.http.max_content_length", 104_857_600, int, False,
                "Largest request body the API accepts, in bytes; larger bodies get 413.", minimum=1),
        Setting("mlcommons.http.read_timeout_seconds", 60.0, float, False,
                "A request's line, headers and body must all arrive within this many seconds of its first "
                "byte, or the API closes the connection (a slow or stalled client cannot hold one open). "
                "At the default, a 10 MB upload chunk needs about 170 KB/s. The dashboard uses it as its "
                "socket time-out.", minimum=0.05),
        Setting("mlcommons.http.keepalive_timeout_seconds", 60.0, float, False,
                "The API closes a connection that has been idle this long since its last answer (or since "
                "it opened, when it has sent no request).", minimum=0.05),
        Setting("mlcommons.http.allowed_hosts", "", str, False,
                "Host names the API and the dashboard answer to, comma-separated, beyond their own: "
                "localhost, 127.0.0.1 and [::1] (any port) when bound to a loopback address, and also any "
                "IP literal and this machine's host name when bound to another address. Other Host headers "
                "get 421, against DNS rebinding. * accepts any Host (behind a proxy that checks it)."),
        Setting("mlcommons.log.format", "text", str, False,
                "How serve, api and worker write their log lines: text, or json (one JSON object per line: "
                "time, level, logger, message, and opaque_id and node when known). The --log-format flag "
                "wins over it; serve passes its choice to the processes it starts."),
        Setting("mlcommons.log.slow_request_seconds", 5.0, float, True,
                "The API logs a request that took at least this many seconds to answer (method, route, "
                "status, time and its X-Opaque-Id), as Elasticsearch's slow logs do. 0 logs every request "
                "(an access log); a negative value logs none.", minimum=-1),
        Setting("mlcommons.model_store.chunk_size", 10_000_000, int, False,
                "Size in bytes of the chunks a registered model archive is split into.", minimum=1024),
        Setting("mlcommons.model_store.max_model_size", 4 * 2**30 - 1, int, True,
                "Largest model archive accepted for registration, in bytes (ML Commons refuses 4 GiB).",
                minimum=1),
        Setting("mlcommons.model_store.url_timeout_seconds", 60.0, float, True,
                "Socket time-out when a register task downloads a model from a URL; also the window over "
                "which url_min_bytes_per_second is measured.", minimum=0.1),
        Setting("mlcommons.model_store.url_deadline_seconds", 540.0, float, True,
                "Longest time a register task may spend downloading a model from a URL, headers included "
                "(below ml_task_timeout_in_seconds, so that the download fails with its own reason).",
                minimum=0.1),
        Setting("mlcommons.model_store.url_min_bytes_per_second", 16_384, int, True,
                "A download from a URL that brings fewer bytes than this per second, over any window of "
                "url_timeout_seconds, fails: a server trickling bytes cannot hold a worker. 0 turns it off.",
                minimum=0),
        Setting("mlcommons.security.master_key_file", "", str, False,
                "The file holding the master key that encrypts connector credentials (32 random bytes, "
                "base64). mlcommons serve makes one in its data dir on first start and gives its path to "
                "every part; give every api and worker process started on its own the same file. Empty: "
                "credentials cannot be stored."),
        Setting("mlcommons.security.enabled", False, bool, False,
                "Security on: every request must authenticate (HTTP Basic with a user, or an API key) and "
                "is allowed by its roles (all_access, ml_full_access, ml_readonly_access, and "
                "Elasticsearch's machine_learning_admin/_user, inference_admin/_user). mlcommons serve "
                "--security turns it on, as does MLCOMMONS_SECURITY_ENABLED=true. Off: the API answers "
                "anyone who reaches it, so serve and api refuse to listen beyond loopback."),
        Setting("mlcommons.security.audit_log", "", str, False,
                "The file the audit log goes to (one JSON line per authentication failure, denial, user, "
                "API-key and settings change). mlcommons serve sets <data dir>/logs/audit.log. Empty: none."),
        Setting("mlcommons.model_store.url_file_roots", "", str, False,
                "Folders a file:// model URL may read from, comma-separated, as Elasticsearch's path.repo; "
                "symbolic links and .. are resolved before the check, and only regular files are read. Empty "
                "(the default): file:// URLs are refused."),
        # --- serving ----------------------------------------------------------------------
        Setting("mlcommons.predict.timeout_seconds", 30.0, float, True,
                "How long a prediction may wait for its result before it fails with a clear error.",
                minimum=0.01),
        Setting("mlcommons.predict.queue_capacity", 10_000, int, True,
                "Requests a deployment's queue holds before new ones get 429 (Elasticsearch's default).",
                minimum=1, maximum=1_000_000),
        Setting("mlcommons.predict.trace_timings", False, bool, False,
                "Benchmarks: every prediction's response carries X-MLCommons-Timing, its timestamps hop by "
                "hop (admission, taken by the worker, forward pass, reply, response), in milliseconds since "
                "the handler began (mlcommons/core/serving/timing.py)."),
        Setting("mlcommons.predict.max_batch_size", 32, int, True,
                "Most documents a worker runs through the model in one forward pass.", minimum=1),
        Setting("mlcommons.predict.max_batch_tokens", 16_384, int, True,
                "Most padded tokens (documents x longest length) in one forward pass.", minimum=1),
        Setting("mlcommons.predict.borrow_idle_threads", True, bool, True,
                "A batch runs on its allocation's threads plus those of the deployment's allocations that "
                "are idle at that moment: a lone request on an idle node gets every core the deployment "
                "has, a busy node's batches one allocation's each. One such batch runs at a time per "
                "worker node, on a thread of its own (an onnxruntime model keeps one more session for it)."),
        Setting("mlcommons.deploy.number_of_allocations", 0, int, True,
                "Inference allocations (parallel executors over one copy of the weights) a deployment gets "
                "on each node; 0 = one per CPU core the node may use, divided by threads_per_allocation.",
                minimum=0, maximum=64),
        Setting("mlcommons.deploy.threads_per_allocation", 1, int, True,
                "Torch threads each allocation runs its forward passes on. More threads cut one request's "
                "latency; more allocations serve more requests at once (DESIGN.md has the measurements).",
                minimum=1, maximum=32),
        Setting("mlcommons.deploy.prepack_weights", True, bool, True,
                "On the CPU, run a TorchScript model's linear layers on weights packed once (oneDNN), "
                "with a GELU that follows one fused in. Done beside the serving threads once the deploy has "
                "answered (about 0.1 s for MiniLM), and kept only where the model's output on "
                "its warm-up input is unchanged; a small batch's forward costs 20 to 40% less (DESIGN.md). "
                "Applies to deploys that start after it changes."),
        Setting("mlcommons.deploy.linear_precision", "float32", str, True,
                "What the packed linear layers of a TorchScript model multiply in (with prepack_weights, on "
                "the CPU): float32, or bfloat16 (opt-in: each linear's input is rounded to bfloat16 and its "
                "output widened back; attention, layer norms and pooling stay float32). On a CPU that "
                "multiplies bfloat16 natively (avx512_bf16, AMX) a forward costs about 40% less; MiniLM's "
                "vectors keep a cosine of 0.9999 or more to float32's. Kept only where the warm-up output "
                "stays within 2% of float32's, else packed in float32; a CPU without native bfloat16 "
                "packs in float32. ONNX models are not affected. Applies to deploys that start after it "
                "changes.", choices=("float32", "bfloat16")),
        Setting("mlcommons.undeploy.timeout_seconds", 30.0, float, True,
                "How long an undeploy call waits for each node to report before answering.", minimum=0.1),
        Setting("mlcommons.search.timeout_seconds", 5.0, float, True,
                "Time budget of one models, model groups or tasks _search: past it the search stops and "
                "answers the hits found so far with timed_out: true, as OpenSearch answers past a search's "
                "timeout. A timeout in the body may shorten it, not lengthen it. Below the 10 s request "
                "time-out of opensearch-py, so a client gets that answer rather than a time-out of its own. "
                "Sorting and fetching the page get as long again.",
                minimum=0),
        # --- nodes --------------------------------------------------------------------------
        Setting("mlcommons.node.heartbeat_interval_seconds", 1.0, float, False,
                "How often a worker node refreshes its heartbeat.", minimum=0.05),
        Setting("mlcommons.node.heartbeat_expiry_seconds", 5.0, float, False,
                "A node whose heartbeat is older than this is considered gone.", minimum=0.2),
        Setting("mlcommons.node.model_cache_bytes", 4 * 2**30, int, False,
                "Disk each worker node may use to keep extracted models it has deployed, keyed by their "
                "SHA-256, so a redeploy of the same archive skips download, hash and extraction; the least "
                "recently used go first. 0 turns the cache off.", minimum=0),
        # --- the cluster watcher --------------------------------------------------------------
        Setting("mlcommons.cluster.watcher_interval_seconds", 0.5, float, True,
                "How often the cluster watcher (node liveness, redeploys, time-outs) runs a round.",
                minimum=0.05, maximum=60),
        Setting("mlcommons.cluster.leader_lease_seconds", 3.0, float, False,
                "How long the acting watcher's lock lasts without renewal; another API process takes over "
                "after it.", minimum=0.2),
        Setting("mlcommons.cluster.deploying_grace_seconds", 20.0, float, True,
                "A model left DEPLOYING without an open deploy task this long is resolved by the sync-up "
                "(ML Commons' 20 s).", minimum=0),
        Setting("mlcommons.predict.auto_deploy_wait_seconds", 120.0, float, True,
                "How long a first prediction waits for the deploy it started (bounded by its own time-out).",
                minimum=0),
        # --- adaptive allocations (Elasticsearch deployments) ------------------------------
        Setting("mlcommons.adaptive_allocations.interval_seconds", 10.0, float, True,
                "How often the cluster watcher measures each deployment with adaptive allocations enabled and "
                "asks the scaler for its allocation count (Elasticsearch's 10 s tick).", minimum=0.05,
                maximum=3600),
        Setting("mlcommons.adaptive_allocations.scale_to_zero_seconds", 86400.0, float, True,
                "A deployment whose min_number_of_allocations is 0 or unset goes to 0 allocations after no "
                "request for this long (xpack.ml.trained_models.adaptive_allocations.scale_to_zero_time); the "
                "model stays loaded and the next request brings back one allocation.", minimum=1),
        Setting("mlcommons.adaptive_allocations.scale_down_cooldown_seconds", 300.0, float, True,
                "No scale-down this long after a scale-up or a node starting to serve the deployment, so that "
                "new allocations are not judged by a load measured before they could help.", minimum=0),
        # --- ML Commons settings ------------------------------------------------------------
        Setting(_ML + "allow_registering_model_via_url", False, bool, True,
                "Allow registering a model from a URL (http(s):// or file://)."),
        Setting(_ML + "allow_registering_model_via_local_file", False, bool, True,
                "Allow registering a model by uploading its chunks (models/_register_meta and upload_chunk)."),
        Setting(_ML + "trusted_url_regex",
                r"^(https?|ftp|file)://[-a-zA-Z0-9+&@#/%?=~_|!:,.;]*[-a-zA-Z0-9+&@#/%=~_|]", str, True,
                "A model URL must contain a match of this regular expression (searched, as ML Commons does)."),
        Setting(_ML + "max_model_on_node", 10, int, True,
                "Most local models one worker node holds; a deploy beyond it fails on that node.", minimum=0,
                maximum=10000),
        Setting(_ML + "ml_task_timeout_in_seconds", 600, int, True,
                "Longest time a deploy or register job may run on a node.", minimum=1, maximum=86400),
        Setting(_ML + "allow_custom_deployment_plan", False, bool, True,
                "Allow _deploy to name target nodes with node_ids."),
        Setting(_ML + "only_run_on_ml_node", True, bool, True,
                "Deploy only to nodes with the ml role (every mlcommons worker node has it)."),
        Setting(_ML + "max_deploy_model_tasks_per_node", 10, int, True,
                "Most deploy tasks queued or running at once on one node.", minimum=0, maximum=10),
        Setting(_ML + "max_register_model_tasks_per_node", 10, int, True,
                "Most register tasks queued or running at once in the cluster, per live node.", minimum=0,
                maximum=10),
        Setting(_ML + "native_memory_threshold", 90, int, True,
                "A node refuses to deploy while its host's used memory is above this percentage (100 = off).",
                minimum=0, maximum=100),
        Setting(_ML + "model_auto_deploy.enable", True, bool, True,
                "Deploy a model on its first _predict when it is not deployed (ML Commons: remote models "
                "only; here local models too). A model opts out with deploy_setting.is_auto_deploy_enabled."),
        Setting(_ML + "model_auto_redeploy.enable", True, bool, True,
                "Deploy models again on nodes of their plan that restart or join, and after a whole-cluster "
                "restart."),
        Setting(_ML + "model_auto_redeploy.lifetime_retry_times", 3, int, True,
                "Automatic redeploy attempts a model gets before the watcher stops trying; reset when a "
                "deploy reaches the success ratio.", minimum=0),
        Setting(_ML + "model_auto_redeploy_success_ratio", 0.8, float, True,
                "Share of a model's planned nodes that must hold it for a deploy to count as a success "
                "(and reset the retry count).", minimum=0, maximum=1),
        Setting(_ML + "sync_up_job_interval_in_seconds", 10, int, True,
                "How often the sync-up reconciles what nodes really hold with the documents, resolves "
                "stale DEPLOYING states and undeploys models idle past their TTL; 0 turns it off.",
                minimum=0, maximum=86400),
        Setting(_ML + "remote_inference.enabled", True, bool, True,
                "Connectors and remote models may be created, changed and used."),
        Setting(_ML + "model_access_control_enabled", False, bool, True,
                "With security on: model groups have an owner and an access_mode (public, private, "
                "restricted with backend_roles), and a user sees, deploys, predicts and searches only the "
                "models of groups they may use. Off, or security off: access fields are refused (400)."),
        Setting(_ML + "connector_access_control_enabled", False, bool, True,
                "With security on: connectors have an owner and an access_mode, as model groups do; a user "
                "sees, changes and registers models with only the connectors they may use."),
        Setting(_ML + "trusted_connector_endpoints_regex", list(TRUSTED_CONNECTOR_ENDPOINTS), list, True,
                "A connector action's URL (its parameters filled in) must match one of these patterns "
                "whole; ML Commons' defaults, which match no loopback or private address. At most 100 "
                "patterns of at most 256 characters, none with nested quantifiers or backreferences."),
        Setting(_ML + "connector.private_ip_enabled", False, bool, True,
                "Whether a remote model may call a host that resolves to a private, loopback or link-local "
                "address."),
        Setting(_ML + "disk_free_space_threshold", 5 * 2**30, int, True,
                "A node refuses to deploy while its data folder's disk has fewer free bytes than this.",
                minimum=0),
    ]
}
