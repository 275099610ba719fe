"""Ordinary mistakes with the ``partnerflow`` command end in one plain message and a documented exit code,
never a traceback: run as a user would, through ``.venv/bin/partnerflow`` in a process of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PARTNERFLOW = Path(sys.executable).parent / "partnerflow"
DEMO_CONFIG = REPO / "config" / "partnership.yaml"
PASSWORD = "s3cret-pw"
SUBCOMMANDS = (
    "check-config",
    "migrate",
    "status",
    "report",
    "calendar",
    "demo",
    "validate",
    "backfill",
    "approve-pack",
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*args: str, env: dict[str, str] | None = None, unset_url: bool = False) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not (unset_url and k == "PARTNERFLOW_WAREHOUSE_URL")}
    environment.update(env or {})
    return subprocess.run(
        [str(PARTNERFLOW), *args], capture_output=True, text=True, env=environment, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def bad_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo configuration with three mistakes: an impossible date, a misspelt partner id, a bad email."""
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    text = text.replace("in_force_from: 2025-04-01, in_force_to: 2028-03-31}", "in_force_from: 2025-13-01}", 1)
    text = text.replace("partner: council", "partner: councl", 1)
    text = text.replace("email: performance.officer@blanktown.example.org", "email: performance.officer", 1)
    path = tmp_path_factory.mktemp("config") / "partnership.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _line(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_every_problem_in_a_config_is_listed_once_with_its_line_and_key(bad_config: Path) -> None:
    result = run("check-config", str(bad_config))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert f"{bad_config}: 3 problem(s)" in result.stderr
    date_line, partner_line = _line(bad_config, "2025-13-01"), _line(bad_config, "partner: councl")
    assert f"{bad_config}:{date_line}: partners[council].agreement.in_force_from: " in result.stderr
    assert "month value is outside expected range of 1-12" in result.stderr
    assert (
        f"{bad_config}:{partner_line}: feeds[council_referrals].partner: 'councl' is not a defined partner; "
        "did you mean 'council'?"
    ) in result.stderr
    assert "officer.email: Value error, is not an email address" not in result.stderr
    assert "officer.email: is not an email address" in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (("check-config", "/nonexistent/partnership.yaml"), {}, 1, "cannot read the file (No such file or directory)"),
        (("status",), {"PARTNERFLOW_CONFIG": "{bad_config}"}, 1, "feeds[council_referrals].partner: 'councl'"),
        (("calendar", "--feed", "polise_ppn"), {}, 1, "no feed 'polise_ppn'; did you mean 'police_ppn'?"),
        (("calendar", "--from", "2026-02-30"), {}, 2, "argument --from:"),
        (
            ("validate", "polise_ppn", "ppn_2026Q3.json"),
            {},
            2,
            "no feed 'polise_ppn' in the configuration; did you mean",
        ),
        (("approve-pack", "2026Q5"), {"PARTNERFLOW_WAREHOUSE_URL": "{down}"}, 1, "approve-pack: "),
        (("migrate",), {"PARTNERFLOW_WAREHOUSE_URL": ""}, 2, "PARTNERFLOW_WAREHOUSE_URL is not set"),
        (("approve-pack", "2026Q3"), {"PARTNERFLOW_WAREHOUSE_URL": ""}, 2, "PARTNERFLOW_WAREHOUSE_URL is not set"),
        (("status",), {"PARTNERFLOW_WAREHOUSE_URL": "{down}"}, 2, "cannot reach the warehouse at 127.0.0.1:"),
        (("status", "--json"), {"PARTNERFLOW_WAREHOUSE_URL": "{down}"}, 2, "cannot reach the warehouse at"),
        (("migrate",), {"PARTNERFLOW_WAREHOUSE_URL": "{down}"}, 2, "cannot reach the warehouse at"),
        (("report", "1"), {"PARTNERFLOW_WAREHOUSE_URL": "{down}"}, 2, "cannot reach the warehouse at"),
        (("approve-pack", "2026Q3"), {"PARTNERFLOW_WAREHOUSE_URL": "{down}"}, 2, "cannot reach the warehouse at"),
        (("report", "one"), {}, 2, "argument FILE_ID: invalid int value: 'one'"),
    ],
)
def test_a_mistake_is_one_message_and_an_exit_code(
    args: tuple[str, ...], env: dict[str, str], code: int, message: str, bad_config: Path, tmp_path: Path
) -> None:
    down = f"postgresql+psycopg://partnerflow:{PASSWORD}@127.0.0.1:{_closed_port()}/warehouse"
    environment = {k: v.format(down=down, bad_config=bad_config) for k, v in env.items()}
    (tmp_path / "ppn_2026Q3.json").write_text("[]")
    environment.setdefault("PARTNERFLOW_CONFIG", str(DEMO_CONFIG))
    args = tuple(str(tmp_path / a) if a.endswith(".json") else a for a in args)
    result = run(*args, env=environment)
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert PASSWORD not in output
    assert message in result.stderr
    assert result.returncode == code
    if "problem(s)" not in result.stderr:  # a configuration lists each of its problems on a line
        assert len(result.stderr.strip().splitlines()) <= 3  # one sentence (argparse adds its usage line)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_explains_itself_with_an_example_and_its_exit_codes(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0
    help_text = result.stdout
    description = help_text.split("\n\n")[1]
    assert len(description) > 40 and not description.lstrip().startswith(("positional", "options"))
    assert (
        f"example:\n  partnerflow {command}" in help_text or f"partnerflow {command}" in help_text.split("example:")[1]
    )
    assert "exit codes: 0 " in help_text
    assert "``" not in help_text
