"""`mlcommons serve --security` as a user would run it: it refuses an open bind without security,
makes the first admin (password printed once, kept 0600), serves HTTPS with the given certificate,
asks the dashboard's visitors for an administrator's credentials, adds users from the command line
(password on stdin), and opensearch-py reaches it as its users configure it."""
from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import urllib.request

from mlcommons.stack.procutil import free_port
from tests.harness import ROOT, child_env, wait_for

ML = "/_plugins/_ml"


def self_signed(folder) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def get(url: str, context, auth: tuple[str, str] | None = None) -> int:
    import base64

    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # not listening yet
        return 0


def env() -> dict:
    return {k: v for k, v in child_env().items() if k not in ("MLCOMMONS_REDIS_URL", "MLCOMMONS_ADMIN_PASSWORD")}


def test_an_open_bind_without_security_is_refused(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mlcommons", "serve", "--host", "0.0.0.0", "--port",
                           str(free_port()), "--data-dir", str(tmp_path / "data")], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 with security off" in done.stderr
    assert not (tmp_path / "data").exists()


def test_serve_with_security_and_tls(tmp_path):
    from opensearchpy import OpenSearch
    from opensearchpy.exceptions import AuthenticationException

    cert, key = self_signed(tmp_path)
    port, board_port = free_port(), free_port()
    data = tmp_path / "data"
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlcommons", "serve", "--security", "--workers", "0",
                             "--port", str(port), "--dashboard-port", str(board_port), "--data-dir", str(data),
                             "--tls-cert", cert, "--tls-key", key], cwd=ROOT, env=env(), stdout=log,
                            stderr=subprocess.STDOUT)
    context = ssl.create_default_context(cafile=cert)
    base = f"https://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(base + "/", context) == 401, 120, 0.2, "the API over HTTPS")
        password = (data / "admin-password").read_text().strip()
        assert os.stat(data / "admin-password").st_mode & 0o777 == 0o600
        output = (tmp_path / "serve.log").read_text()
        assert output.count(password) == 1  # shown once
        assert get(base + f"{ML}/models/_search", context, ("admin", password)) == 200
        # the dashboard asks for an administrator
        board = f"http://127.0.0.1:{board_port}"
        wait_for(lambda: get(board + "/", None) == 401, 60, 0.2, "the dashboard to ask for credentials")
        assert get(board + "/0/data/queues.json", None, ("admin", password)) == 200
        # a user from the command line, password on stdin
        added = subprocess.run([sys.executable, "-m", "mlcommons", "users", "--data-dir", str(data), "add", "reader",
                                "--roles", "ml_readonly_access"], input="reader-secret\n", cwd=ROOT, env=env(),
                               capture_output=True, text=True, timeout=60)
        assert added.returncode == 0 and "user [reader] created" in added.stdout, added.stderr
        assert get(board + "/", None, ("reader", "reader-secret")) == 401  # not an administrator
        client = OpenSearch(hosts=[{"host": "127.0.0.1", "port": port}], http_auth=("reader", "reader-secret"),
                            use_ssl=True, verify_certs=True, ca_certs=cert)
        found = client.transport.perform_request("POST", f"{ML}/models/_search", body={"query": {"match_all": {}}})
        assert found["hits"]["total"]["value"] == 0
        stranger = OpenSearch(hosts=[{"host": "127.0.0.1", "port": port}], http_auth=("reader", "wrong"),
                              use_ssl=True, verify_certs=True, ca_certs=cert)
        try:
            stranger.transport.perform_request("GET", f"{ML}/models/_search")
            raise AssertionError("a wrong password was let in")
        except AuthenticationException:
            pass
        listed = subprocess.run([sys.executable, "-m", "mlcommons", "users", "--data-dir", str(data), "list"],
                                cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60)
        assert "admin\troles=all_access" in listed.stdout and "reader\troles=ml_readonly_access" in listed.stdout
        audit = (data / "logs" / "audit.log").read_text()
        assert '"authentication_failed"' in audit and "reader-secret" not in audit and password not in audit
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(90)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()
