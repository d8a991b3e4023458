"""Elasticsearch as a single node on loopback, from the integ-test-zip distribution, on Java 17.

Elasticsearch refuses to run as root. When we are root we run it as the unprivileged system user
`logtide` (created once), with its files under that user's home, because root's home is 0700.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import ssl
import subprocess
from pathlib import Path

from logtide.services import fetch, health, process
from logtide.services.base import Service
from logtide.services.certs import make_ca_and_cert
from logtide.services.config import ES_USER, LOOPBACK, ServiceError, Settings, java_home, running_as_root

HEAP = "-Xms512m\n-Xmx512m\n"
CLUSTER_NAME = "logtide-dev"


def elasticsearch_yml(s: Settings) -> str:
    """Node settings for a throwaway development node."""
    return f"""\
# Written by `logtide services up` on every start; edits here are overwritten.
cluster.name: {CLUSTER_NAME}
node.name: logtide
network.host: {LOOPBACK}
http.port: {s.es_port}
transport.port: {s.es_transport_port}
discovery.type: single-node
path.data: {s.es_dir / "data"}
path.logs: {s.es_dir / "logs"}
# Development machines and CI runners are often nearly full; never go read-only over it.
cluster.routing.allocation.disk.threshold_enabled: false
# Tests clean up with wildcard deletes.
action.destructive_requires_name: false
""" + (SECURE_YML if s.es_secure else INSECURE_YML)


INSECURE_YML = """\
# Plain HTTP on loopback, no passwords: this node is for development and tests only.
xpack.security.enabled: false
"""
# LOGTIDE_ES_SECURE=1: the security module on, HTTPS with a certificate from our throwaway CA, and
# a file-realm user (single-node discovery needs no transport TLS).
SECURE_YML = """\
xpack.security.enabled: true
xpack.security.http.ssl.enabled: true
xpack.security.http.ssl.keystore.path: secure/http.p12
xpack.security.transport.ssl.enabled: false
xpack.security.authc.realms.file.file1.order: 0
xpack.license.self_generated.type: basic
"""
ES_SECURE_USER = "logtide"


def secure_dir(s: Settings) -> Path:
    return s.es_dir / "config" / "secure"


def credentials(s: Settings) -> tuple[str, str, Path]:
    """(user, password, CA file) of a secured instance."""
    d = secure_dir(s)
    return ES_SECURE_USER, (d / "password").read_text(), d / "ca.pem"


def _tool(home: Path, conf: Path, tool: str, *args: str, stdin: str | None = None) -> None:
    env = {**{k: v for k, v in os.environ.items() if k != "JAVA_HOME"}, "ES_JAVA_HOME": str(java_home()),
           "ES_PATH_CONF": str(conf)}  # fmt: skip
    proc = subprocess.run([str(home / "bin" / tool), *args], input=stdin, capture_output=True, text=True,
                          env=env, check=False, timeout=180)  # fmt: skip
    if proc.returncode != 0:
        raise ServiceError(f"{tool} {args[0] if args else ''} failed: {proc.stdout[-600:]}{proc.stderr[-600:]}")


def _prepare_secure(home: Path, conf: Path) -> None:
    """Certificate, keystore password and the user, once per instance."""
    d = conf / "secure"
    if (d / "password").is_file():
        return
    store_pw = secrets.token_urlsafe(18)
    make_ca_and_cert(d, store_pw, cn="logtide-dev-es")
    os.replace(d / "broker.p12", d / "http.p12")
    _tool(home, conf, "elasticsearch-keystore", "create")
    _tool(home, conf, "elasticsearch-keystore", "add", "-x", "-f", "xpack.security.http.ssl.keystore.secure_password",
          stdin=store_pw)  # fmt: skip
    password = secrets.token_urlsafe(18)
    _tool(home, conf, "elasticsearch-users", "useradd", ES_SECURE_USER, "-p", password, "-r", "superuser")
    (d / "password").write_text(password)


def ensure_user(name: str = ES_USER, home: Path | None = None) -> None:
    """Create the unprivileged system user Elasticsearch runs as (idempotent; root only)."""
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    cmd = [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    if home is not None:
        cmd += ["--home-dir", str(home)]
    proc = subprocess.run([*cmd, name], capture_output=True, text=True, check=False)
    if proc.returncode != 0 and "already exists" not in proc.stderr:
        raise ServiceError(
            f"could not create the system user {name!r} to run Elasticsearch: {proc.stderr.strip()}"
        )


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _write_config(s: Settings, home: Path) -> Path:
    """A private config dir per instance (ES writes its keystore there), seeded from the distribution."""
    conf = s.es_dir / "config"
    if not conf.is_dir():
        shutil.copytree(home / "config", conf)
    (conf / "elasticsearch.yml").write_text(elasticsearch_yml(s))
    (conf / "jvm.options.d").mkdir(exist_ok=True)
    (conf / "jvm.options.d" / "logtide-heap.options").write_text(HEAP)
    for sub in ("data", "logs", "tmp"):
        (s.es_dir / sub).mkdir(parents=True, exist_ok=True)
    return conf


def _start(s: Settings) -> int:
    home = fetch.ensure_es_home(s)
    conf = _write_config(s, home)
    if s.es_secure:
        _prepare_secure(home, conf)
    user = None
    if running_as_root():
        ensure_user(home=s.es_root)
        _chown_tree(s.es_dir, ES_USER)
        user = ES_USER
    jdk = str(java_home())
    env = {
        **{k: v for k, v in os.environ.items() if k != "JAVA_HOME"},  # ES warns when both are set
        "ES_JAVA_HOME": jdk,
        "ES_PATH_CONF": str(conf),
        "ES_TMPDIR": str(s.es_dir / "tmp"),
        "ES_JAVA_OPTS": "",
    }
    if user:
        env["HOME"] = str(s.es_root)
        env["USER"] = env["LOGNAME"] = user
    return process.spawn(
        [str(home / "bin" / "elasticsearch")],
        env=env,
        cwd=s.es_dir / "logs",  # the distribution's jvm.options writes gc.log relative to here
        out_file=s.es_dir / "logs" / "console.out",
        pid_file=s.pid_file("elasticsearch"),
        user=user,
    )


def es_service(s: Settings) -> Service:
    """The Elasticsearch node of this instance, as the manager sees it."""
    return Service(
        name="elasticsearch",
        address=s.es_url,
        ports=(s.es_port, s.es_transport_port),
        pid_file=s.pid_file("elasticsearch"),
        log_file=s.es_log,
        marker=str(s.es_dir / "config"),
        answers=lambda: health.es_answers(s.es_url, **(_auth(s) if s.es_secure else {})),
        fetch=lambda: fetch.ensure_es_home(s),
        start=lambda: _start(s),
    )


def _auth(s: Settings) -> dict[str, object]:
    try:
        user, password, ca = credentials(s)
    except OSError:
        return {"auth": ("none", "none")}
    return {"auth": (user, password), "verify": ssl.create_default_context(cafile=str(ca))}
