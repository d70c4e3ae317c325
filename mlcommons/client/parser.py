"""The client verbs' command line: ``models``, ``predict`` and ``tasks``, added to the ``mlcommons``
command's sub-parsers by :func:`add_client_parsers`, and :func:`run`, which every verb goes
through: it builds the connection and the output, and turns errors into exit statuses."""
from __future__ import annotations

import argparse
import getpass
import os
import sys

from mlcommons.client import verbs
from mlcommons.client.http import DEFAULT_URL, ClientError, Connection, Exit, usage
from mlcommons.client.output import Output
from mlcommons.client.upload import FORMATS, POOLING_MODES

URL_ENV, USER_ENV, PASSWORD_ENV, API_KEY_ENV = "MLCOMMONS_URL", "MLCOMMONS_USER", "MLCOMMONS_PASSWORD", "MLCOMMONS_API_KEY"
DEFAULT_WAIT = 600.0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 7 * 24 * 3600:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most a week of seconds, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= verbs.MAX_LIST:
        raise argparse.ArgumentTypeError(f"must be from 1 to {verbs.MAX_LIST}, got {text!r}")
    return value


def _seq_length(text: str) -> int:
    value = _count(text)
    if value > 65_536:
        raise argparse.ArgumentTypeError(f"must be at most 65536, got {text!r}")
    return value


class ClientParser(argparse.ArgumentParser):
    """Model and task ids are URL-safe base64 and may begin with ``-``: an argument that is none of
    the verb's options is a value (``mlcommons models get -7AX...``), not an unknown option."""

    def _parse_optional(self, arg_string):
        if arg_string.startswith("-") and arg_string.split("=", 1)[0] not in self._option_string_actions:
            if not arg_string.startswith("--"):
                return None  # our only short option is -h; "-h..." as a prefix would swallow an id
            found = super()._parse_optional(arg_string)
            first = found[0] if isinstance(found, list) and found else found  # a list from Python 3.12.7
            return found if isinstance(first, tuple) and first[0] is not None else None
        return super()._parse_optional(arg_string)


def _common() -> argparse.ArgumentParser:
    """The options every client verb takes (after the verb: ``mlcommons models list --url ...``)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("server")
    group.add_argument("--url", help=f"the server (default ${URL_ENV}, else {DEFAULT_URL})")
    group.add_argument("--user", help=f"basic authentication as this user (default ${USER_ENV}); the password "
                                      f"comes from ${PASSWORD_ENV}, else a prompt")
    group.add_argument("--api-key", help=f"an API key, its 'encoded' form or id:api_key (default ${API_KEY_ENV}, "
                                         "which keeps it out of the process list)")
    group.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
    group.add_argument("--ca-cert", help="verify the server's TLS certificate against this CA bundle (PEM)")
    group.add_argument("--json", action="store_true", help="print results as JSON")
    return common


def add_client_parsers(sub) -> None:
    """Add ``models``, ``predict`` and ``tasks`` to the ``mlcommons`` command's sub-parsers."""
    common = _common()

    def leaf(parent, name: str, verb, help_text: str) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, parents=[common], help=help_text, description=help_text)
        parser.set_defaults(func=run, verb=verb)
        return parser

    def waits(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--timeout", type=_positive_float, default=DEFAULT_WAIT,
                            help=f"seconds to wait for a task before giving up with exit status 5 (default "
                                 f"{DEFAULT_WAIT:g})")

    models = sub.add_parser("models", help="upload, list, get, deploy, undeploy and delete models (over HTTP)")
    models_sub = models.add_subparsers(dest="models_command", required=True, parser_class=ClientParser)
    upload = leaf(models_sub, "upload", verbs.models_upload,
                  "register a model from an ML Commons zip, or a sentence-transformers or Hugging Face folder "
                  "(traced and packaged first), in 10 MB chunks; prints the model id last")
    upload.add_argument("path", help="a .zip archive, or a model folder")
    upload.add_argument("--name", help="the model's name (default: the config file's, else the file or folder name)")
    upload.add_argument("--version", help="sent as the model's version (the server numbers versions in its group)")
    upload.add_argument("--model-config", metavar="FILE",
                        help="JSON: opensearch-py-ml's model config file, or the model_config object alone")
    upload.add_argument("--model-format", type=str.upper, choices=FORMATS,
                        help="the archive's format (read from a zip; TORCH_SCRIPT by default for a folder)")
    upload.add_argument("--pooling-mode", type=str.upper, choices=POOLING_MODES, default="MEAN",
                        help="pooling of a Hugging Face folder's token embeddings (default MEAN)")
    upload.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True,
                        help="L2-normalise a Hugging Face folder's embeddings (default yes)")
    upload.add_argument("--max-seq-length", type=_seq_length, help="truncation length of a packaged folder")
    upload.add_argument("--deploy", action="store_true", help="deploy the model once it is uploaded")
    upload.add_argument("--wait", action="store_true", help="wait for the deploy task to end")
    waits(upload)
    listing = leaf(models_sub, "list", verbs.models_list, "list the models, newest first")
    listing.add_argument("--size", type=_count, default=100, help="at most this many (default 100)")
    get = leaf(models_sub, "get", verbs.models_get, "show one model")
    get.add_argument("model_id")
    deploy = leaf(models_sub, "deploy", verbs.models_deploy, "deploy a model; prints the deploy task's id")
    deploy.add_argument("model_id")
    deploy.add_argument("--wait", action="store_true", help="wait for the deploy task to end")
    waits(deploy)
    undeploy = leaf(models_sub, "undeploy", verbs.models_undeploy, "undeploy a model from every node")
    undeploy.add_argument("model_id")
    delete = leaf(models_sub, "delete", verbs.models_delete, "delete a model (undeploy it first)")
    delete.add_argument("model_id")

    predict = leaf(_ClientParsers(sub), "predict", verbs.predict, "embed texts (or run the model on them) and print the results "
                                                  "as JSON, one line per text")
    predict.add_argument("model", help="a model id, or the name of exactly one model")
    predict.add_argument("texts", nargs="*", metavar="TEXT", help="the texts; none or - reads them from stdin, "
                                                                   "one a line")
    predict.add_argument("--query-text", help="the query a TEXT_SIMILARITY model compares each text with")

    tasks = sub.add_parser("tasks", help="list, show and watch tasks (over HTTP)")
    tasks_sub = tasks.add_subparsers(dest="tasks_command", required=True, parser_class=ClientParser)
    tasks_list = leaf(tasks_sub, "list", verbs.tasks_list, "list the tasks, newest first")
    tasks_list.add_argument("--size", type=_count, default=100, help="at most this many (default 100)")
    tasks_get = leaf(tasks_sub, "get", verbs.tasks_get, "show one task")
    tasks_get.add_argument("task_id")
    watch = leaf(tasks_sub, "watch", verbs.tasks_watch, "wait until a task ends, then show it; exit status 4 "
                                                        "unless it COMPLETED")
    watch.add_argument("task_id")
    waits(watch)


class _ClientParsers:
    """``sub.add_parser`` making a :class:`ClientParser` (the mlcommons command's own sub-parsers make
    plain ones, and argparse names the class only where the sub-parsers are made)."""

    def __init__(self, sub):
        self.sub = sub

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        before = self.sub._parser_class
        self.sub._parser_class = ClientParser
        try:
            return self.sub.add_parser(name, **kwargs)
        finally:
            self.sub._parser_class = before


def connection(args) -> Connection:
    """The connection the arguments and the environment describe. Flags win over the environment."""
    url = args.url or os.environ.get(URL_ENV) or DEFAULT_URL
    user, api_key = args.user, args.api_key
    if user is None and api_key is None:
        user, api_key = os.environ.get(USER_ENV) or None, os.environ.get(API_KEY_ENV) or None
    password = None
    if user is not None and api_key is None:
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            if not sys.stdin.isatty():
                raise usage(f"--user needs a password: set {PASSWORD_ENV}, or run on a terminal to be asked")
            password = getpass.getpass(f"password for [{user}]: ")
    return Connection(url, user=user, password=password, api_key=api_key, insecure=args.insecure,
                      ca_cert=args.ca_cert)


def run(args, out: Output | None = None) -> int:
    """Run ``args.verb``; an error becomes ``error: <message>`` on stderr and its exit status."""
    out = out or Output.for_streams(json_mode=args.json)
    try:
        return int(args.verb(args, connection(args), out))
    except ClientError as exc:
        out.error(exc.message)
        return int(exc.code)
    except KeyboardInterrupt:
        out.error("interrupted")
        return int(Exit.INTERRUPTED)
    except BrokenPipeError:  # `mlcommons models list | head -1`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return int(Exit.OK)
