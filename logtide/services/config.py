"""Where the local services live and how they listen: one place for paths, ports, versions and Java.

Everything is derived from the environment at call time so that tests can point a second instance
at other directories and ports (LOGTIDE_CACHE, LOGTIDE_STATE, LOGTIDE_KAFKA_PORT, ...).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from pathlib import Path

POM_DIR = Path(__file__).resolve().parent
KAFKA_POM = POM_DIR / "kafka-pom.xml"
ES_POM = POM_DIR / "es-pom.xml"

# Elasticsearch refuses to run as root; as root we run it as this unprivileged system user.
ES_USER = "logtide"
# Root's home is 0700, so the unprivileged user cannot reach ~/.cache; as root the unpacked
# Elasticsearch and its data live under the system user's home instead.
ES_ROOT_DEFAULT = Path("/var/lib/logtide")

LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service could not be fetched, started, stopped or reached; the message says what to look at."""


@cache
def pom_property(pom: Path, name: str) -> str:
    """Read one <properties> value from a pom, so the version is written in exactly one place."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find(f"m:properties/m:{name}", ns)
    if node is None or not (node.text or "").strip():
        raise ServiceError(f"{pom} has no <{name}> property")
    return node.text.strip()


def kafka_version() -> str:
    """The Kafka broker version pinned in kafka-pom.xml."""
    return pom_property(KAFKA_POM, "kafka.version")


def es_version() -> str:
    """The Elasticsearch version pinned in es-pom.xml."""
    return pom_property(ES_POM, "elasticsearch.version")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ServiceError(f"{name}={raw!r} is not a port number") from exc


def running_as_root() -> bool:
    return os.geteuid() == 0


@dataclass(frozen=True)
class Settings:
    """Paths and ports of one local instance of the services."""

    cache: Path  # downloads and unpacked distributions, shared by every instance
    state: Path  # data, logs, pid files and generated configs of this instance
    es_root: Path  # base for Elasticsearch's own files (differs from cache/state only as root)
    kafka_port: int
    kafka_controller_port: int
    es_port: int
    es_transport_port: int
    es_secure: bool = False  # LOGTIDE_ES_SECURE=1: security module on, HTTPS and a user (see es_service)

    # -- Kafka -------------------------------------------------------------------------------------
    @property
    def kafka_libs(self) -> Path:
        """The jars of kafka-pom.xml; a change to the pom (a new tool) resolves into a new folder."""
        digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()[:8]
        return self.cache / f"kafka-{kafka_version()}-{digest}" / "libs"

    @property
    def kafka_dir(self) -> Path:
        return self.state / "kafka"

    @property
    def kafka_log(self) -> Path:
        return self.kafka_dir / "logs" / "server.log"

    @property
    def kafka_address(self) -> str:
        return f"{LOOPBACK}:{self.kafka_port}"

    # -- Elasticsearch -----------------------------------------------------------------------------
    @property
    def es_zip_dir(self) -> Path:
        return self.cache / "downloads"

    @property
    def es_home(self) -> Path:
        return self.es_root / f"elasticsearch-{es_version()}"

    @property
    def es_dir(self) -> Path:
        """Config, data and logs of this Elasticsearch instance."""
        if self.es_root == self.cache:
            return self.state / "elasticsearch"
        return self.es_root / "instances" / f"es-{self.es_port}"

    @property
    def es_log(self) -> Path:
        return self.es_dir / "logs" / "logtide-dev.log"

    @property
    def es_url(self) -> str:
        return f"{'https' if self.es_secure else 'http'}://{LOOPBACK}:{self.es_port}"

    def pid_file(self, service: str) -> Path:
        return self.state / f"{service}.pid"


def settings() -> Settings:
    """Build the settings from the environment (defaults: ~/.cache/logtide, ports 9092/9093/9200)."""
    cache_dir = Path(os.environ.get("LOGTIDE_CACHE") or Path.home() / ".cache" / "logtide").expanduser()
    state = Path(os.environ.get("LOGTIDE_STATE") or cache_dir / "state").expanduser()
    if os.environ.get("LOGTIDE_ES_ROOT"):
        es_root = Path(os.environ["LOGTIDE_ES_ROOT"]).expanduser()
    elif running_as_root():
        es_root = ES_ROOT_DEFAULT
    else:
        es_root = cache_dir
    kafka_port = _env_int("LOGTIDE_KAFKA_PORT", 9092)
    return Settings(
        cache=cache_dir.resolve(),
        state=state.resolve(),
        es_root=es_root.resolve(),
        kafka_port=kafka_port,
        kafka_controller_port=_env_int("LOGTIDE_KAFKA_CONTROLLER_PORT", kafka_port + 1),
        es_port=_env_int("LOGTIDE_ES_PORT", 9200),
        es_transport_port=_env_int("LOGTIDE_ES_TRANSPORT_PORT", 9300),
        es_secure=os.environ.get("LOGTIDE_ES_SECURE") == "1",
    )


def java_home() -> Path:
    """A Java 17 home: Kafka 4 and Elasticsearch 8.19 both run on it (ES 8.19 is not tested on newer)."""
    candidates = [os.environ.get("LOGTIDE_JAVA_HOME", "")]
    candidates += sorted(glob.glob("/usr/lib/jvm/java-17-openjdk*")) + sorted(glob.glob("/usr/lib/jvm/*17*"))
    candidates += [os.environ.get("JAVA_HOME", "")]
    for cand in candidates:
        if cand and (Path(cand) / "bin" / "java").is_file():
            return Path(cand)
    java = shutil.which("java")
    if java:
        return Path(java).resolve().parent.parent
    raise ServiceError(
        "no Java found: install a JDK 17 (apt-get install openjdk-17-jdk-headless) or set LOGTIDE_JAVA_HOME"
    )
