"""What an rq job may be: one of this project's task functions, encoded as JSON.

rq's default encoding is pickle, and a worker unpickles every job it takes: anyone who could
write to Redis could make a worker run anything (``os.mkdir``, a shell) as its own user. Here a
job's data is JSON (rq's ``JSONSerializer``), so reading one runs no code, and a worker performs
only the functions named below: a job that names anything else (or a method of some object) fails
without running, with a reason that says so. The API, the workers, the watcher and rq-dashboard
all read and write jobs this way.
"""
from __future__ import annotations

from rq.job import Job
from rq.serializers import JSONSerializer

REGISTER = "tasks.register.register_model"
DEPLOY = "tasks.deploy.deploy_model"
UNDEPLOY = "tasks.undeploy.undeploy_model"
PING = "tasks.ping.ping"
FUNCTIONS = frozenset({REGISTER, DEPLOY, UNDEPLOY, PING})

SERIALIZER = JSONSerializer


class RefusedJob(Exception):
    """A job that names a function this project does not offer."""


class ProjectJob(Job):
    """An rq job that resolves only to one of :data:`FUNCTIONS`."""

    @property
    def func(self):
        name = self.func_name
        if self.instance is not None or name not in FUNCTIONS:
            raise RefusedJob(f"job [{self.id}] names [{str(name)[:200]}], which is not one of mlcommons' task "
                             f"functions {sorted(FUNCTIONS)}; refused without running it")
        return super().func
