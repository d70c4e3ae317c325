"""The internal surfaces, locked whether security is on or off: someone who reaches Redis cannot
make a worker node run anything but mlcommons' own task functions (a pickled job is never
unpickled; a JSON job that names another function fails without running)."""
from __future__ import annotations

from rq import Queue
from rq.registry import FailedJobRegistry

from mlcommons.core.tasks.allowed import SERIALIZER, ProjectJob
from tests.cluster import KEYS
from tests.harness import wait_for


def test_a_forged_job_never_runs(cluster, tmp_path):
    node = cluster.nodes[0]
    queue_name = KEYS.node_queue(node)
    pickled, named = tmp_path / "made-by-a-pickled-job", tmp_path / "made-by-a-json-job"
    # rq's default (pickle) encoding, as an attacker with a Redis connection would write it
    Queue(queue_name, connection=cluster.redis).enqueue_call("os.mkdir", args=(str(pickled),),
                                                             job_id="forged-pickle")
    Queue(queue_name, connection=cluster.redis, serializer=SERIALIZER).enqueue_call(
        "os.mkdir", args=(str(named),), job_id="forged-json")
    failed = FailedJobRegistry(queue_name, connection=cluster.redis, serializer=SERIALIZER,
                               job_class=ProjectJob)
    wait_for(lambda: {"forged-pickle", "forged-json"} <= set(failed.get_job_ids()), 30, 0.1,
             "the forged jobs to fail")
    assert not pickled.exists() and not named.exists()
    refused = ProjectJob.fetch("forged-json", connection=cluster.redis, serializer=SERIALIZER)
    assert "not one of mlcommons' task functions" in (refused.latest_result().exc_string or "")
    # the node is still there and still serves
    assert cluster.redis.exists(KEYS.node_alive(node))
