"""One installed package: the rooms install as `logtide.*`, and nothing else reaches site-packages."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("logtide", "schemas", "shippers", "streams", "sinks", "detectors")


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed() -> None:
    st = _setuptools()
    to_folder = {pkg: Path(folder) for pkg, folder in st["package-dir"].items()}
    listed = set()
    for pkg in st["packages"]:
        head = max((p for p in to_folder if pkg == p or pkg.startswith(p + ".")), key=len)
        listed.add(to_folder[head].joinpath(*pkg[len(head):].split(".")[1:]))
    found = {init.parent.relative_to(ROOT) for room in ROOMS for init in (ROOT / room).rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "listed packages without an __init__.py"


def test_no_code_imports_a_room_as_a_top_level_package() -> None:
    offenders = []
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts or "data" in path.parts:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            s = line.strip()
            for room in ROOMS[1:]:
                if s.startswith((f"from {room}.", f"from {room} import", f"import {room}")):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {s}")
    assert offenders == []


def test_wheel_has_one_top_level_package(tmp_path: Path) -> None:
    uv = Path(sys.executable).with_name("uv")
    subprocess.run([str(uv), "build", "--wheel", "-q", "-o", str(tmp_path), str(ROOT)], check=True)
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        top = next(n for n in names if n.endswith("top_level.txt"))
        assert z.read(top).decode().split() == ["logtide"]
        assert {n.split("/")[0] for n in names} == {"logtide", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
        assert "logtide/schemas/json/anomaly.schema.json" in names
        assert "logtide/services/kafka-pom.xml" in names
