"""The local Kafka's secured listener: TLS + SASL/SCRAM-SHA-512 on 127.0.0.1:9094, users and ACLs.

`logtide services up --secure` adds it beside the plaintext listener (which the rest of the test
suite keeps using, as the super user ANONYMOUS: development only). A throwaway CA and a broker
certificate are made with the JDK's keytool; SCRAM users are created with Kafka's ConfigCommand and
their ACLs with Kafka's AclCommand, so the broker is configured the way an operator would do it:
the shipper may only write the raw topics, the streams worker reads raw and writes derived topics
(and its own Faust internal topics), the sink reads derived topics and writes dead letters.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from logtide.services.certs import make_ca_and_cert
from logtide.services.config import LOOPBACK, ServiceError, Settings, java_home

MECHANISM = "SCRAM-SHA-512"
ADMIN = "logtide-admin"
#: Users of the secured listener, one per process kind, and what each may do (see `acl_specs`).
USERS = (ADMIN, "logtide-shipper", "logtide-streams", "logtide-sink", "logtide-reader", "logtide-alerts")
RAW = ("logs.raw", "metrics.raw")
DERIVED = ("logs.enriched", "metrics.agg", "anomalies", "deadletter", "alerts")


@dataclass(frozen=True)
class SecureFiles:
    """Where the secured listener's material lives (under the Kafka instance's state dir)."""

    root: Path

    @property
    def ca_pem(self) -> Path:
        return self.root / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.root / "broker.p12"

    @property
    def users_file(self) -> Path:
        return self.root / "users.json"

    @property
    def store_password_file(self) -> Path:
        return self.root / "store-password"


def secure_port(s: Settings) -> int:
    raw = os.environ.get("LOGTIDE_KAFKA_SECURE_PORT")
    return int(raw) if raw else s.kafka_port + 2


def files(s: Settings) -> SecureFiles:
    return SecureFiles(s.kafka_dir / "secure")


def enabled(s: Settings) -> bool:
    """The secured listener was asked for on this instance (its material exists)."""
    return files(s).users_file.is_file()


def prepare(s: Settings) -> SecureFiles:
    """Certificates and user passwords, made once per instance (kept across restarts)."""
    f = files(s)
    if f.users_file.is_file() and f.keystore.is_file() and f.ca_pem.is_file():
        return f
    f.root.mkdir(parents=True, exist_ok=True)
    os.chmod(f.root, 0o700)
    store_pw = secrets.token_urlsafe(18)
    make_ca_and_cert(f.root, store_pw)
    f.store_password_file.write_text(store_pw)
    users = {u: secrets.token_urlsafe(18) for u in USERS}
    f.users_file.write_text(json.dumps(users, indent=1))
    for p in (f.store_password_file, f.users_file, f.keystore):
        os.chmod(p, 0o600)
    return f


def passwords(s: Settings) -> dict[str, str]:
    """User name -> password of the secured listener (read from the instance's users.json)."""
    return json.loads(files(s).users_file.read_text())


def listener_properties(s: Settings) -> str:
    """The server.properties lines that add the SASL_SSL listener, SCRAM and the authorizer."""
    f = files(s)
    port = secure_port(s)
    return f"""\
listeners=PLAINTEXT://{LOOPBACK}:{s.kafka_port},SASL_SSL://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{s.kafka_controller_port}
advertised.listeners=PLAINTEXT://{LOOPBACK}:{s.kafka_port},SASL_SSL://{LOOPBACK}:{port}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms={MECHANISM}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location={f.keystore}
ssl.keystore.password={f.store_password_file.read_text()}
ssl.key.password={f.store_password_file.read_text()}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
# The plaintext listener (development and the test suite) and the controller run as ANONYMOUS.
super.users=User:ANONYMOUS;User:{ADMIN}
allow.everyone.if.no.acl.found=false
"""


def _tool(s: Settings, main_class: str, *args: str) -> str:
    cmd = [str(java_home() / "bin" / "java"), "-Xmx256m", "-cp", f"{s.kafka_libs}/*",
           f"-Dlog4j2.configurationFile={s.kafka_dir / 'log4j2.properties'}", f"-Dkafka.logs.dir={s.kafka_dir / 'logs'}",
           main_class, *args]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=180, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise ServiceError(f"{main_class.rsplit('.', 1)[-1]} failed (exit {proc.returncode}): {proc.stderr[-1500:]}")
    return proc.stdout


def create_users(s: Settings) -> None:
    """SCRAM-SHA-512 credentials for every user, through the plaintext listener (Kafka's ConfigCommand)."""
    for user, pw in passwords(s).items():
        _tool(s, "kafka.admin.ConfigCommand", "--bootstrap-server", s.kafka_address, "--alter",
              "--add-config", f"{MECHANISM}=[iterations=4096,password={pw}]",
              "--entity-type", "users", "--entity-name", user)  # fmt: skip


def acl_specs(prefix: str = "logtide.", app_id: str = "logtide-streams", sink_group: str = "logtide-sinks",
              ) -> list[tuple[str, ...]]:  # fmt: skip
    """AclCommand argument lists: who may do what on the topics of one topic prefix."""
    out: list[tuple[str, ...]] = []

    def allow(users: tuple[str, ...], ops: tuple[str, ...], kind: str, names: tuple[str, ...],
              pattern: str = "literal") -> None:  # fmt: skip
        who = tuple(a for u in users for a in ("--allow-principal", f"User:{u}"))
        op_args = tuple(a for op in ops for a in ("--operation", op))
        res = tuple(a for n in names for a in (f"--{kind}", n))
        out.append((*who, *op_args, *res, "--resource-pattern-type", pattern))

    raw = tuple(prefix + t for t in RAW)
    derived = tuple(prefix + t for t in DERIVED)
    allow(("logtide-shipper",), ("Write", "Describe"), "topic", raw)
    allow(("logtide-streams",), ("Read", "Describe"), "topic", raw)
    allow(("logtide-streams",), ("Write", "Describe", "Create"), "topic", derived)
    allow(("logtide-sink", "logtide-reader"), ("Read", "Describe"), "topic", derived)
    allow(("logtide-sink",), ("Write",), "topic", (prefix + "deadletter",))
    allow(("logtide-streams",), ("All",), "topic", (app_id,), "prefixed")  # Faust's points/changelog/leader
    allow(("logtide-streams",), ("All",), "group", (app_id,), "prefixed")
    allow(("logtide-sink",), ("Read",), "group", (sink_group,), "prefixed")
    allow(("logtide-reader",), ("Read",), "group", ("logtide-",), "prefixed")
    # the alert process: reads anomalies, records attempts, keeps its notification log and silences
    allow(("logtide-alerts",), ("Read", "Describe"), "topic", (prefix + "anomalies",))
    allow(("logtide-alerts",), ("Write", "Describe"), "topic", (prefix + "alerts",))
    allow(("logtide-alerts",), ("All",), "topic", (prefix + "alerts.nflog", prefix + "alerts.silences"))
    allow(("logtide-alerts",), ("All",), "group", ("logtide-alerts",), "prefixed")
    return out


def grant(s: Settings, prefix: str = "logtide.", app_id: str = "logtide-streams",
          sink_group: str = "logtide-sinks") -> None:  # fmt: skip
    """Create the ACLs of one topic prefix (idempotent: Kafka keeps one copy of an identical ACL)."""
    for spec in acl_specs(prefix, app_id, sink_group):
        _tool(s, "org.apache.kafka.tools.AclCommand", "--bootstrap-server", s.kafka_address, "--add", *spec)


def format_args(s: Settings) -> list[str]:
    """StorageTool arguments that create the SCRAM users with the storage (one JVM instead of five)."""
    if not enabled(s):
        return []
    return [a for u, pw in passwords(s).items() for a in ("--add-scram", f"{MECHANISM}=[name={u},password={pw}]")]


def formatted(s: Settings) -> None:
    """Called after the storage was formatted: the users exist if they were passed to the formatter, and
    the ACLs of the old storage are gone with it, so they are granted again."""
    (files(s).root / "provisioned").unlink(missing_ok=True)
    if enabled(s):
        (files(s).root / "users-created").write_text("with the storage\n")


def provision(s: Settings) -> bool:
    """Users and the default prefix's ACLs, once per instance; True when it did the work now."""
    marker = files(s).root / "provisioned"
    if marker.is_file():
        return False
    if not (files(s).root / "users-created").is_file():
        create_users(s)
        (files(s).root / "users-created").write_text("with ConfigCommand\n")
    grant(s)
    marker.write_text("users and ACLs for prefix logtide.\n")
    return True
