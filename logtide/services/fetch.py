"""Download the service distributions once, with Maven from Maven Central, into the logtide cache.

A download lands in a temporary folder and is renamed into place only when complete, so an interrupted
download is simply retried next time and a present folder always means a usable distribution.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from logtide.services.config import ES_POM, KAFKA_POM, ServiceError, Settings, es_version, kafka_version

MAVEN_TIMEOUT_S = 900


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def maven_copy_dependencies(pom: Path, artifact: str, out_dir: Path, cache: Path) -> None:
    """Run `mvn dependency:copy-dependencies` for `pom` into `out_dir` (Maven's repo also in the cache).

    The pom is copied to a scratch folder first so that Maven never writes into the work tree.
    """
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError(
            f"cannot fetch {artifact}: Maven (`mvn`) is not on PATH; install it (apt-get install maven)"
        )
    logs = cache / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"maven-{pom.stem}.log"
    with tempfile.TemporaryDirectory(prefix="mvn-", dir=cache) as scratch:
        shutil.copy(pom, Path(scratch) / "pom.xml")
        cmd = [
            mvn, "-B", "-ntp",
            f"-Dmaven.repo.local={cache / 'm2'}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={out_dir}",
            "-DincludeScope=runtime",
        ]  # fmt: skip
        with log_path.open("w") as log:
            try:
                proc = subprocess.run(
                    cmd,
                    cwd=scratch,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=MAVEN_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise ServiceError(
                    f"downloading {artifact} with Maven timed out after {MAVEN_TIMEOUT_S}s; "
                    f"Maven Central must be reachable. Maven log: {log_path}"
                ) from exc
    if proc.returncode != 0:
        raise ServiceError(
            f"downloading {artifact} with Maven failed (exit {proc.returncode}); Maven Central "
            f"(repo.maven.apache.org) must be reachable. Maven log: {log_path}\n{_tail(log_path)}"
        )


def ensure_kafka(s: Settings) -> Path:
    """Make sure the Kafka broker jars are in the cache; return the libs folder."""
    libs = s.kafka_libs
    if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
        return libs
    s.cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="kafka-libs-", dir=s.cache))
    try:
        maven_copy_dependencies(KAFKA_POM, f"org.apache.kafka:kafka_2.13:{kafka_version()}", tmp, s.cache)
        libs.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, libs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return libs


def ensure_es_zip(s: Settings) -> Path:
    """Make sure the Elasticsearch integ-test-zip is in the cache; return its path."""
    version = es_version()
    zip_path = s.es_zip_dir / f"elasticsearch-{version}.zip"
    if zip_path.is_file():
        return zip_path
    s.es_zip_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="es-zip-", dir=s.cache))
    try:
        artifact = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
        maven_copy_dependencies(ES_POM, artifact, tmp, s.cache)
        found = list(tmp.glob("elasticsearch-*.zip"))
        if not found:
            raise ServiceError(f"Maven finished but no {artifact} arrived in {tmp}")
        os.replace(found[0], zip_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return zip_path


def unzip_with_modes(zip_path: Path, dest: Path) -> None:
    """Extract a zip keeping the Unix permission bits (zipfile drops them; bin/ must stay executable)."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = Path(zf.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o7777
            if mode:
                target.chmod(mode)


def ensure_es_home(s: Settings) -> Path:
    """Make sure Elasticsearch is unpacked (from the cached zip); return ES_HOME."""
    home = s.es_home
    if (home / "bin" / "elasticsearch").is_file():
        return home
    zip_path = ensure_es_zip(s)
    home.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="es-unpack-", dir=home.parent))
    try:
        unzip_with_modes(zip_path, tmp)
        inner = tmp / home.name
        if not (inner / "bin" / "elasticsearch").is_file():
            raise ServiceError(
                f"{zip_path} does not contain {home.name}/bin/elasticsearch; delete it to re-fetch"
            )
        os.replace(inner, home)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return home
