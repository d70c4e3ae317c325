"""The ``mlcommons`` command as a client: the real command, run as a subprocess (so not on a
terminal: plain output), against the shared cluster; and the rich output of a terminal, through
the output layer with a terminal console."""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlcommons.stack.procutil import free_port
from tests.cluster import ML
from tests.harness import child_env, wait_for
from tests.modelkit import build_tiny_sentence_transformer

COMMAND = [str(Path(sys.executable).with_name("mlcommons"))]
TEXTS = ["hello world", "a second, somewhat longer text to embed"]


def cli(cluster, *argv: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``mlcommons <argv>`` against the cluster (by MLCOMMONS_URL), outside any terminal."""
    env = child_env(MLCOMMONS_URL=cluster.api.base)
    for name in ("MLCOMMONS_USER", "MLCOMMONS_PASSWORD", "MLCOMMONS_API_KEY"):
        env.pop(name, None)
    return subprocess.run([*COMMAND, *argv], input=stdin, capture_output=True, text=True, env=env,
                          timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout.splitlines()


def direct_predict(cluster, model_id: str, texts: list[str]) -> list[list[float]]:
    resp = cluster.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": texts})
    assert resp.status == 200, resp.body
    return [r["output"][0]["data"] for r in resp.body["inference_results"]]


def test_upload_archive_then_every_verb(cluster, tiny, tmp_path):
    zip_path, info = tiny
    name = f"cli-archive-{tmp_path.name}"
    config = tmp_path / "ml-commons_model_config.json"  # the file opensearch-py-ml's register_model takes
    config.write_text(json.dumps({"name": name, "version": "1.0.0", "model_format": "TORCH_SCRIPT",
                                  "model_config": info["model_config"]}))

    lines = ok(cli(cluster, "models", "upload", str(zip_path), "--model-config", str(config), "--deploy", "--wait"))
    model_id = lines[-1]
    assert lines == [model_id]  # results on stdout, notes on stderr: the id is the last (only) line
    model = cluster.model(model_id)
    assert model["name"] == name and model["model_state"] == "DEPLOYED", model
    assert model["model_content_hash_value"] == info["model_content_hash_value"]

    rows = [line.split("\t") for line in ok(cli(cluster, "models", "list"))]
    mine = next(row for row in rows if row[0] == model_id)
    assert mine[1:4] == [name, model["model_version"], "DEPLOYED"]
    assert json.loads(ok(cli(cluster, "models", "get", model_id))[0])["model_state"] == "DEPLOYED"

    want = direct_predict(cluster, model_id, TEXTS)
    assert [json.loads(line) for line in ok(cli(cluster, "predict", model_id, *TEXTS))] == want
    assert [json.loads(line) for line in ok(cli(cluster, "predict", name, "-", stdin="\n".join(TEXTS)))] == want
    whole = json.loads(ok(cli(cluster, "predict", name, TEXTS[0], "--json"))[0])
    assert whole["inference_results"][0]["output"][0]["data"] == want[0]

    rows = [line.split("\t") for line in ok(cli(cluster, "tasks", "list"))]
    task_id = next(row[0] for row in rows if row[1:4] == ["DEPLOY_MODEL", "COMPLETED", model_id])
    assert json.loads(ok(cli(cluster, "tasks", "get", task_id))[0])["state"] == "COMPLETED"
    assert json.loads(ok(cli(cluster, "tasks", "watch", task_id))[-1])["state"] == "COMPLETED"
    as_json = json.loads(ok(cli(cluster, "tasks", "list", "--json", "--size", "5"))[0])
    assert isinstance(as_json, list) and len(as_json) <= 5 and all("task_id" in t for t in as_json)

    undeployed = [line.split("\t") for line in ok(cli(cluster, "models", "undeploy", model_id))]
    assert undeployed and all(row[1:] == [model_id, "undeployed"] for row in undeployed), undeployed
    assert cluster.model(model_id)["model_state"] == "UNDEPLOYED"
    # deploy again by id, waiting: the task id on stdout
    lines = ok(cli(cluster, "models", "deploy", model_id, "--wait"))
    assert cluster.api.get(f"{ML}/tasks/{lines[-1]}").body["state"] == "COMPLETED"
    ok(cli(cluster, "models", "undeploy", model_id))
    assert ok(cli(cluster, "models", "delete", model_id)) == [f"{model_id}\tdeleted"]
    assert cluster.api.get(f"{ML}/models/{model_id}").status == 404

    missing = cli(cluster, "models", "get", model_id)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("error: 404 status_exception: Failed to find model"), missing.stderr
    assert cli(cluster, "predict", "no-such-model-name", "x").returncode == 1


def test_upload_sentence_transformers_folder(cluster, tmp_path):
    """A folder is traced and packaged by the command; the served embeddings are the eager model's."""
    from sentence_transformers import SentenceTransformer

    folder = build_tiny_sentence_transformer(tmp_path, seed=7)
    lines = ok(cli(cluster, "models", "upload", str(folder), "--name", f"cli-st-{tmp_path.name}", "--deploy",
                   "--wait"))
    model_id = lines[-1]
    model = cluster.model(model_id)
    assert model["model_state"] == "DEPLOYED"
    assert model["model_config"]["embedding_dimension"] == 32
    assert model["model_config"]["framework_type"] == "SENTENCE_TRANSFORMERS"
    served = np.array([json.loads(line) for line in ok(cli(cluster, "predict", model_id, *TEXTS))])
    eager = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(served, eager, atol=1e-4)
    ok(cli(cluster, "models", "undeploy", model_id))
    ok(cli(cluster, "models", "delete", model_id))


def test_exit_codes(cluster, tiny, tmp_path):
    port = free_port()
    unreachable = cli(cluster, "models", "list", "--url", f"http://127.0.0.1:{port}")
    assert unreachable.returncode == 3, unreachable
    assert unreachable.stderr.startswith(f"error: cannot reach the server at http://127.0.0.1:{port}")
    assert cli(cluster, "models", "get").returncode == 2  # argparse: the id is missing
    assert cli(cluster, "models", "upload", str(tmp_path / "nothing.zip")).returncode == 2
    assert cli(cluster, "models", "list", "--size", "0").returncode == 2
    assert cli(cluster, "models", "list", "--user", "u", "--api-key", "k").returncode == 2
    bare = tmp_path / "plain.txt"
    bare.write_text("not a model")
    assert cli(cluster, "models", "upload", str(bare)).returncode == 2

    # A deploy that fails on every node (the declared hash is not the archive's) ends FAILED: 4,
    # with the task id still on stdout.
    zip_path, info = tiny
    meta = {"name": f"cli-bad-hash-{tmp_path.name}", "model_format": "TORCH_SCRIPT",
            "model_content_hash_value": "0" * 64, "model_config": info["model_config"], "total_chunks": 1}
    model_id = cluster.api.post(f"{ML}/models/_register_meta", meta).body["model_id"]
    assert cluster.api.post(f"{ML}/models/{model_id}/upload_chunk/0", data=zip_path.read_bytes()).status == 200
    failed = cli(cluster, "models", "deploy", model_id, "--wait")
    assert failed.returncode == 4, failed
    task_id = failed.stdout.splitlines()[-1]
    assert failed.stderr.splitlines()[-1].startswith(f"error: task {task_id} ended FAILED")
    assert cli(cluster, "tasks", "watch", task_id).returncode == 4
    cluster.api.post(f"{ML}/models/{model_id}/_undeploy")
    wait_for(lambda: cluster.api.delete(f"{ML}/models/{model_id}").status == 200, 30, 0.2, "the model deleted")


def test_rich_output_on_a_terminal(cluster, tiny):
    """The terminal path: the upload's status line and progress bar, and a table, rendered by rich.
    The archive comes without --model-config, so its model_config is read off the archive."""
    from rich.console import Console

    from mlcommons.client.output import Output
    from mlcommons.client.parser import add_client_parsers, run

    parser = argparse.ArgumentParser(prog="mlcommons")
    add_client_parsers(parser.add_subparsers(dest="command", required=True))
    stdout, stderr = io.StringIO(), io.StringIO()
    out = Output(out=Console(file=stdout, force_terminal=True, width=160),
                 err=Console(file=stderr, force_terminal=True, width=160))
    zip_path, info = tiny
    assert run(parser.parse_args(["models", "upload", str(zip_path), "--url", cluster.api.base]), out) == 0
    model_id = stdout.getvalue().splitlines()[-1]
    model = cluster.model(model_id)
    assert model["model_state"] == "REGISTERED"
    assert model["model_config"]["embedding_dimension"] == info["model_config"]["embedding_dimension"]
    assert model["model_config"]["framework_type"] == "SENTENCE_TRANSFORMERS"
    assert "uploading" in stderr.getvalue() and "\x1b[" in stderr.getvalue()  # the bar, in colour

    stdout.truncate(0)
    stdout.seek(0)
    assert run(parser.parse_args(["models", "list", "--url", cluster.api.base]), out) == 0
    table = stdout.getvalue()
    assert model_id in table and "REGISTERED" in table and ("━" in table or "─" in table)
    assert "\t" not in table

    stderr.truncate(0)
    stderr.seek(0)
    assert run(parser.parse_args(["models", "get", "nope", "--url", cluster.api.base]), out) == 1
    assert "error:" in stderr.getvalue() and "404" in stderr.getvalue()
    assert cluster.api.delete(f"{ML}/models/{model_id}").status == 200


@pytest.mark.parametrize("argv", [["models", "list"], ["tasks", "list"]])
def test_help_needs_no_server(argv):
    result = subprocess.run([*COMMAND, *argv, "--help"], capture_output=True, text=True, env=child_env(),
                            timeout=60)
    assert result.returncode == 0 and "--url" in result.stdout


def test_hugging_face_folder_is_packaged_and_its_archive_needs_a_config(tmp_path):
    """A bare transformer is traced with the pooling asked for; its archive alone cannot say how to
    pool, so uploading that zip without --model-config is a usage error (2), before any request."""
    from mlcommons.client import upload as up
    from mlcommons.client.http import ClientError, Exit
    from tests.modelkit import build_tiny_transformer

    folder = build_tiny_transformer(tmp_path)
    assert up.kind_of(folder) == "huggingface"
    zip_path, config = up.package_folder(folder, "huggingface", tmp_path, model_format="TORCH_SCRIPT",
                                         pooling_mode="CLS", normalize=False, max_seq_length=None)
    assert (config["framework_type"], config["pooling_mode"], config["normalize_result"]) == (
        "huggingface_transformers", "CLS", False)
    assert config["embedding_dimension"] == 32 and config["model_type"] == "bert"
    with pytest.raises(ClientError) as refused:
        up.probe_archive(zip_path, up.format_of(zip_path))
    assert refused.value.code == Exit.USAGE and "--model-config" in refused.value.message
