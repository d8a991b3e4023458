"""Bring the selected services up, down, or report on them; the logic behind `logtide services`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from logtide.services import health, kafka_secure, process
from logtide.services.base import Service
from logtide.services.config import LOOPBACK, ServiceError, Settings, settings
from logtide.services.es_service import es_service
from logtide.services.kafka_service import kafka_service

DEFAULT_TIMEOUT_S = 240.0
NAMES = ("kafka", "elasticsearch")

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def select(s: Settings, kafka: bool = True, elasticsearch: bool = True) -> list[Service]:
    """The services asked for, in start order."""
    chosen = []
    if kafka:
        chosen.append(kafka_service(s))
    if elasticsearch:
        chosen.append(es_service(s))
    return chosen


def _tail(path: Path, lines: int = 10, width: int = 240) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "    (no log yet)"
    return "\n".join("    " + (line if len(line) <= width else line[:width] + " ...") for line in text)


def _failure(svc: Service, what: str) -> ServiceError:
    console = svc.log_file.parent / "console.out"
    return ServiceError(
        f"{svc.name} {what}. Log: {svc.log_file} (console output: {console})\n"
        f"last lines of {svc.log_file.name}:\n{_tail(svc.log_file)}\n"
        f"last lines of {console.name}:\n{_tail(console)}"
    )


def _launch(svc: Service, echo: Echo) -> int | None:
    """Start `svc` unless it is already running (ours) or already answering (someone else's)."""
    pid = process.owned_pid(svc.pid_file, svc.marker)
    if pid is not None:
        echo(f"{svc.name}: already running (pid {pid})")
        return pid
    if svc.answers():
        echo(f"{svc.name}: already answering at {svc.address} (not started by logtide; left alone)")
        return None
    busy = [p for p in svc.ports if health.port_in_use(LOOPBACK, p)]
    if busy:
        raise ServiceError(
            f"{svc.name}: port(s) {', '.join(map(str, busy))} on {LOOPBACK} are taken by another program "
            f"that is not a working {svc.name}; stop it or choose other ports (see LOGTIDE_*_PORT)"
        )
    pid = svc.start()
    echo(f"{svc.name}: started (pid {pid}), log {svc.log_file}")
    return pid


def _wait_ready(pending: dict[str, tuple[Service, int | None]], timeout: float, echo: Echo) -> None:
    deadline = time.monotonic() + timeout
    while pending:
        for name, (svc, pid) in list(pending.items()):
            if svc.answers():
                echo(f"{svc.name}: answering at {svc.address}")
                del pending[name]
            elif pid is not None and not process.alive(pid):
                svc.pid_file.unlink(missing_ok=True)
                raise _failure(svc, f"exited before answering (pid {pid})")
        if pending and time.monotonic() > deadline:
            svc, pid = next(iter(pending.values()))
            left = f"; it is left running (pid {pid}), `logtide services down` stops it" if pid else ""
            raise _failure(svc, f"did not answer at {svc.address} within {timeout:.0f}s{left}")
        if pending:
            time.sleep(0.5)


def ensure_up(
    kafka: bool = True,
    elasticsearch: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
    echo: Echo = _quiet,
    secure: bool = False,
) -> dict[str, str]:
    """Start whatever of Kafka/Elasticsearch is not running, wait until they answer, return addresses.

    Idempotent: running services are left alone. Raises ServiceError naming the log file on failure.
    Returns e.g. {"kafka": "127.0.0.1:9092", "elasticsearch": "http://127.0.0.1:9200"}.
    """
    s = settings()
    chosen = select(s, kafka, elasticsearch)
    for svc in chosen:  # fetch everything before starting anything: a download error starts nothing
        t0 = time.monotonic()
        svc.fetch()
        if time.monotonic() - t0 > 1:
            echo(f"{svc.name}: fetched into the cache in {time.monotonic() - t0:.1f}s")
    if kafka and secure:
        kafka_secure.prepare(s)
        sec_port = kafka_secure.secure_port(s)
        if process.owned_pid(s.pid_file("kafka"), str(s.kafka_dir / "server.properties")) and not (
            health.port_in_use(LOOPBACK, sec_port)
        ):
            raise ServiceError(
                "kafka is running without the secured listener; restart it with it: "
                "`logtide services down --only kafka && logtide services up --secure`"
            )
    pending = {svc.name: (svc, _launch(svc, echo)) for svc in chosen}
    _wait_ready(pending, timeout, echo)
    addresses = {svc.name: svc.address for svc in chosen}
    if kafka and kafka_secure.enabled(s):
        t0 = time.monotonic()
        if kafka_secure.provision(s):
            echo(f"kafka: SCRAM users and ACLs created in {time.monotonic() - t0:.1f}s")
        f = kafka_secure.files(s)
        addresses["kafka (SASL_SSL)"] = f"{LOOPBACK}:{kafka_secure.secure_port(s)}"
        echo(f"kafka: secured listener SASL_SSL/{kafka_secure.MECHANISM} at {LOOPBACK}:{kafka_secure.secure_port(s)}, "
             f"CA {f.ca_pem}, users {', '.join(kafka_secure.USERS)} (passwords in {f.users_file})")
    return addresses


def stop(kafka: bool = True, elasticsearch: bool = True, echo: Echo = _quiet) -> dict[str, bool]:
    """Stop the services we started (by pid file, whole process group). Returns name -> was running."""
    s = settings()
    result = {}
    for svc in reversed(select(s, kafka, elasticsearch)):
        result[svc.name] = process.stop(svc.pid_file, svc.marker)
        echo(f"{svc.name}: {'stopped' if result[svc.name] else 'was not running (nothing of ours)'}")
    return result


@dataclass(frozen=True)
class Status:
    name: str
    pid: int | None  # our process, if running
    address: str
    answering: bool
    log_file: Path

    @property
    def state(self) -> str:
        if self.pid is not None:
            return "running"
        return "running (not ours)" if self.answering else "stopped"


def status(kafka: bool = True, elasticsearch: bool = True) -> list[Status]:
    """What runs, under which pid, and whether it answers a health probe."""
    return [
        Status(
            svc.name, process.owned_pid(svc.pid_file, svc.marker), svc.address, svc.answers(), svc.log_file
        )
        for svc in select(settings(), kafka, elasticsearch)
    ]


def is_kafka_up() -> bool:
    """Kafka answers a metadata request at the configured address."""
    s = settings()
    return health.kafka_answers(LOOPBACK, s.kafka_port)


def is_es_up() -> bool:
    """Elasticsearch answers with cluster health yellow or green at the configured address."""
    return health.es_answers(settings().es_url)


def kafka_bootstrap() -> str:
    """host:port for Kafka clients' bootstrap_servers."""
    return settings().kafka_address


def es_url() -> str:
    """Base URL for the Elasticsearch client."""
    return settings().es_url
