"""opensearch-py-ml, the OpenSearch project's own Python client for ML Commons, in a virtual
environment of its own: its pins (pandas < 2.3, numpy >= 2.3.2, boto3...) clash with ours, and its
``ml_commons`` part imports without torch. Every package is pinned and installed with
``--no-deps``, so nothing unpinned (a CUDA torch above all) can come in. The tests run
``tests/osml_script.py`` with this environment's python."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-osml"
SCRIPT = Path(__file__).resolve().parent / "osml_script.py"
# opensearch-py-ml 1.3.0 and its whole dependency closure, as pip resolved it (2026-11), pinned.
OSML = [
    "opensearch-py-ml==1.3.0", "opensearch-py==3.2.0", "opensearch-protobufs==1.2.0", "grpcio==1.85.3",
    "protobuf==7.36.2", "Events==0.5", "pandas==2.2.3", "numpy==2.4.6", "python-dateutil==2.9.0.post0",
    "pytz==2026.6", "tzdata==2026.6", "six==1.17.0", "matplotlib==3.11.2", "contourpy==1.3.3", "cycler==0.12.1",
    "fonttools==4.68.0", "kiwisolver==1.5.1", "packaging==26.4", "pillow==13.0.0", "pyparsing==3.3.3",
    "Deprecated==1.3.1", "wrapt==2.5.2", "boto3==1.44.8", "botocore==1.44.8", "jmespath==1.1.0",
    "s3transfer==0.19.3", "requests==2.34.2", "certifi==2026.10.19.post1", "charset-normalizer==3.5.3",
    "idna==3.20", "urllib3==2.8.0", "requests-aws4auth==1.4.0", "colorama==0.4.6", "rich==15.0.0",
    "markdown-it-py==4.3.0", "mdurl==0.1.2", "Pygments==2.21.0", "typing_extensions==4.16.0", "PyYAML==6.0.4",
]


class VenvUnavailable(RuntimeError):
    """The environment could not be made (no package registry): the tests skip, saying so."""


def ensure_venv() -> Path:
    """The environment's python, made once (about 20 s) and made again when :data:`OSML` changes."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    wanted = " ".join(OSML)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", *OSML],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise VenvUnavailable(f"pip could not install opensearch-py-ml's pinned set: {done.stderr.strip()[-600:]}")
    probe = "import sys, opensearch_py_ml.ml_commons; sys.exit('torch' in sys.modules)"
    check = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    if check.returncode != 0:
        raise VenvUnavailable(f"opensearch_py_ml.ml_commons does not import without torch: {check.stderr.strip()[-600:]}")
    stamp.write_text(wanted)
    return python


def run_script(base: str, steps: dict, timeout: float = 300.0) -> dict:
    """Run :data:`SCRIPT` in the environment against the API at ``base``: ``steps`` (JSON) in on
    stdin, its JSON results out (the script's last line of output)."""
    python = ensure_venv()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_PROXY": "*", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([str(python), str(SCRIPT), base], input=json.dumps(steps), capture_output=True,
                          text=True, timeout=timeout, env=env)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AssertionError(f"osml_script failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])
