"""Self-signed certificates for the test servers, made with the ``openssl`` command line tool."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
x509_extensions = v3
prompt = no

[dn]
CN = localhost

[v3]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyEncipherment, keyCertSign
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` for localhost/127.0.0.1 into ``directory``.

    The certificate is its own CA: pass ``cert.pem`` as the CA file to a client.
    Returns ``(cert_path, key_path)``.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "the openssl command line tool is needed for TLS tests (apt install openssl)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "openssl.cnf"
    cert = directory / "cert.pem"
    key = directory / "key.pem"
    config.write_text(_OPENSSL_CONFIG)
    result = subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-config",
            str(config),
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"openssl could not make a test certificate: {result.stderr.decode(errors='replace')}"
        )
    key.chmod(0o600)
    return cert, key


def client_context(ca_file: Path | str) -> ssl.SSLContext:
    """A verifying client context (hostname check on) that trusts only ``ca_file``."""
    return ssl.create_default_context(cafile=str(ca_file))
