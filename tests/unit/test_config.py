"""The partnership configuration: the demo file is valid, and broken files say where they are broken."""

from pathlib import Path

import pytest

from partnerflow.cli.main import main
from partnerflow.core.config import ConfigError, load_config

DEMO = Path(__file__).resolve().parents[2] / "config" / "partnership.yaml"


def test_demo_config_is_valid():
    config = load_config(DEMO)
    assert {f.id for f in config.feeds} >= {"council_referrals", "police_ppn"}
    assert {f.transport.kind for f in config.feeds} == {"sftp", "http"}


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = DEMO.read_text()
    assert old in text
    path = tmp_path / "partnership.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_misspelled_key_is_named_with_its_path(tmp_path):
    path = _broken(tmp_path, "directory: /council/referrals", "directry: /council/referrals")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert str(path) in message
    assert "feeds[council_referrals].transport.directory: Field required" in message


def test_feed_naming_an_unknown_partner_is_refused(tmp_path):
    path = _broken(tmp_path, "partner: police", "partner: probation")
    with pytest.raises(ConfigError, match=r"feeds\[police_ppn\]\.partner: 'probation' is not a defined partner"):
        load_config(path)


def test_invalid_yaml_reports_line(tmp_path):
    path = tmp_path / "partnership.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(path)


def test_check_config_command_exit_codes(tmp_path, capsys):
    assert main(["check-config", str(DEMO)]) == 0
    broken = _broken(tmp_path, "email: dcs@", "email: dcs-at-")
    assert main(["check-config", str(broken)]) == 1
    assert "partners[council].senior_lead.email" in capsys.readouterr().err
