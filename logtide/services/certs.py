"""A throwaway CA and a server certificate it signed, made with the JDK's keytool (no Python crypto
dependency): for the secured Kafka listener and the secured Elasticsearch node of `logtide services`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from logtide.services.config import LOOPBACK, ServiceError, java_home


def _keytool(*args: str, cwd: Path) -> None:
    cmd = [str(java_home() / "bin" / "keytool"), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise ServiceError(f"keytool {args[0]} failed: {proc.stdout[-800:]}{proc.stderr[-800:]}")


def make_ca_and_cert(
    out: Path, store_password: str, *, cn: str = "logtide-dev-broker", days: int = 825, start: str | None = None
) -> tuple[Path, Path]:
    """A CA (PEM) and a PKCS#12 keystore with a broker certificate it signed, for 127.0.0.1/localhost.

    `start` is keytool's -startdate (e.g. "-3d"), so tests can make certificates already expired.
    """
    out.mkdir(parents=True, exist_ok=True)
    ca_store, ks, csr, crt, ca_pem = (out / n for n in ("ca.p12", "broker.p12", "broker.csr", "broker.crt", "ca.pem"))
    for p in (ca_store, ks, csr, crt, ca_pem):
        p.unlink(missing_ok=True)
    pw = ("-storepass", store_password, "-keypass", store_password)
    validity = ("-validity", str(days)) + (("-startdate", start) if start else ())
    _keytool("-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-dname", "CN=logtide-dev-ca",
             "-ext", "bc:c", "-validity", "3650", "-storetype", "PKCS12", "-keystore", str(ca_store), *pw,
             cwd=out)  # fmt: skip
    _keytool("-exportcert", "-rfc", "-alias", "ca", "-keystore", str(ca_store), "-storepass", store_password,
             "-file", str(ca_pem), cwd=out)  # fmt: skip
    _keytool("-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-dname", f"CN={cn}",
             *validity, "-storetype", "PKCS12", "-keystore", str(ks), *pw, cwd=out)  # fmt: skip
    _keytool("-certreq", "-alias", "broker", "-keystore", str(ks), "-storepass", store_password,
             "-file", str(csr), cwd=out)  # fmt: skip
    _keytool("-gencert", "-alias", "ca", "-keystore", str(ca_store), "-storepass", store_password,
             "-infile", str(csr), "-outfile", str(crt), "-rfc", *validity,
             "-ext", f"SAN=ip:{LOOPBACK},dns:localhost", cwd=out)  # fmt: skip
    _keytool("-importcert", "-noprompt", "-alias", "ca", "-file", str(ca_pem), "-keystore", str(ks),
             "-storepass", store_password, cwd=out)  # fmt: skip
    _keytool("-importcert", "-noprompt", "-alias", "broker", "-file", str(crt), "-keystore", str(ks),
             "-storepass", store_password, cwd=out)  # fmt: skip
    ca_store.unlink()  # the CA's key is not needed again: a new CA is made when the material is renewed
    csr.unlink()
    return ca_pem, ks
