"""The Submissions page in the Airflow UI: registered with Airflow, refused to strangers and to signed-in users
without partnerflow's permission, right for those with it.

Authentication and authorisation are Airflow's own: the SimpleAuthManager (the demo's) and the FAB auth manager
(the compose deployment's) sign JWTs exactly as the API server's login does; Airflow's ``get_user`` checks them
(signature, expiry, and the revoked-token list in Airflow's metadata database, here a throw-away SQLite file) and
the auth manager decides on the permission (``partnerflow.airflow.access``).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import sqlalchemy as sa
from airflow import settings
from airflow.api_fastapi import app as api_app
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN, BaseAuthManager
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from airflow.api_fastapi.auth.tokens import JWTGenerator
from airflow.models.revoked_token import RevokedToken
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import scoped_session, sessionmaker

from partnerflow import warehouse
from partnerflow.airflow import access
from partnerflow.airflow.plugin import URL_PREFIX, PartnerflowPlugin
from partnerflow.core import clock

PAGE = f"{URL_PREFIX}/submissions"
JSON_PAGE = f"{URL_PREFIX}/submissions.json"
UI_COOKIE = COOKIE_NAME_JWT_TOKEN  # the Airflow UI's session: a JWT in a cookie
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
TODAY = dt.datetime(2026, 10, 26, 9, 0, tzinfo=dt.UTC)  # police_ppn's 2026Q3 return, due 21 October, is late


@pytest.fixture
def auth_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleAuthManager]:
    """Airflow's SimpleAuthManager as the API server holds it, with a fresh JWT secret and revoked-token table."""
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))
    # Airflow builds its JWT signer and validator once per process (one secret for the API server's lifetime).
    _forget_jwt_keys()
    metadata = sa.create_engine(
        f"sqlite:///{tmp_path / 'airflow-metadata.db'}", connect_args={"check_same_thread": False}
    )
    RevokedToken.__table__.create(metadata)
    monkeypatch.setattr(settings, "Session", scoped_session(sessionmaker(bind=metadata, expire_on_commit=False)))
    manager = SimpleAuthManager()
    monkeypatch.setattr(api_app._AuthManagerState, "instance", manager)
    yield manager
    _forget_jwt_keys()
    metadata.dispose()


FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


@pytest.fixture
def fab_auth_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BaseAuthManager]:
    """The FAB auth manager of the compose deployment, on a throw-away SQLite metadata database holding FAB's
    users, roles and permissions (and the revoked-token table), with a fresh JWT secret."""
    from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager
    from airflow.providers.fab.auth_manager.models import model_metadata

    url = f"sqlite:///{tmp_path / 'airflow-metadata.db'}"
    for name, value in {
        "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
        "AIRFLOW__FAB__CONFIG_FILE": str(tmp_path / "webserver_config.py"),  # absent: FAB's defaults
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
    }.items():
        monkeypatch.setenv(name, value)
    _forget_jwt_keys()
    metadata = sa.create_engine(url, connect_args={"check_same_thread": False})
    model_metadata.create_all(metadata)
    RevokedToken.__table__.create(metadata)
    monkeypatch.setattr(settings, "engine", metadata)
    monkeypatch.setattr(settings, "SQL_ALCHEMY_CONN", url)
    monkeypatch.setattr(settings, "Session", scoped_session(sessionmaker(bind=metadata, expire_on_commit=False)))
    manager = FabAuthManager()
    manager.cache.clear()  # FAB keeps signed-in users, by id, for [fab] cache_ttl seconds (class-wide)
    monkeypatch.setattr(api_app._AuthManagerState, "instance", manager)
    yield manager
    manager.cache.clear()
    _forget_jwt_keys()
    metadata.dispose()


def fab_tokens(manager: BaseAuthManager, roles: dict[str, str]) -> dict[str, str]:
    """A FAB user per ``username: role`` and a JWT for each, as FAB's login issues them."""
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    tokens = {}
    with get_application_builder() as appbuilder:
        security = appbuilder.sm
        for username, role in roles.items():
            if security.find_role(role) is None:
                security.add_role(role)
            user = security.add_user(
                username, username, "Tester", f"{username}@example.org", security.find_role(role), password="unused"
            )
            tokens[username] = manager.generate_jwt(user)
    return tokens


def _forget_jwt_keys() -> None:
    BaseAuthManager._get_token_signer.cache_clear()
    BaseAuthManager._get_token_validator.cache_clear()


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The plugin's app mounted on a root app the way Airflow's API server mounts plugin apps."""
    (entry,) = PartnerflowPlugin().fastapi_apps
    root = FastAPI()
    root.mount(entry["url_prefix"], entry["app"])
    with TestClient(root) as test_client:
        yield test_client


def token_for(manager: SimpleAuthManager, username: str = "officer", role: str = "op") -> str:
    return manager.generate_jwt(SimpleAuthManagerUser(username=username, role=role))


def get_with_ui_cookie(client: TestClient, path: str, token: str):
    """A request carrying the Airflow UI's session cookie, as the browser sends it to the embedded page."""
    client.cookies.set(UI_COOKIE, token)
    try:
        return client.get(path)
    finally:
        client.cookies.clear()


@pytest.fixture
def submissions(warehouse_url: str) -> None:
    """Two periods of the demo partnership: council published 2026Q3 and was rejected in 2026Q2; police are late."""
    with warehouse.engine().begin() as conn:
        file_ids = {}
        for period, state, rows in (("2026Q2", "rejected", None), ("2026Q3", "published", 1234)):
            file_ids[period] = conn.execute(
                sa.text(
                    "INSERT INTO ops.received_files (feed_id, period_id, source_name, sha256, landed_path, state,"
                    " row_count) VALUES ('council_referrals', :p, :name, :sha, :path, :state, :rows) RETURNING id"
                ),
                {
                    "p": period,
                    "name": f"referrals_{period}.csv",
                    "sha": secrets.token_hex(32),
                    "path": f"landing/{period}",
                    "state": state,
                    "rows": rows,
                },
            ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO ops.submissions (feed_id, period_id, due_date, state, published_file_id, rows_published,"
                " published_at)"
                " VALUES ('council_referrals', '2026Q3', '2026-10-21', 'published', :f3, 1234, '2026-10-23 10:00Z'),"
                "        ('council_referrals', '2026Q2', '2026-07-21', 'rejected', NULL, NULL, NULL),"
                "        ('police_ppn', '2026Q3', '2026-10-21', 'expected', NULL, NULL, NULL)"
            ),
            {"f3": file_ids["2026Q3"]},
        )
        conn.execute(
            sa.text(
                "INSERT INTO ops.validation_reports (file_id, passed, report) VALUES (:f, false, CAST(:r AS jsonb))"
            ),
            {
                "f": file_ids["2026Q2"],
                "r": json.dumps(
                    {
                        "passed": False,
                        "rules_checked": 12,
                        "rows_checked": 40,
                        "failures": [
                            {
                                "code": "REF-003",
                                "message": "Referral date in the period",
                                "columns": ["referral_date"],
                                "severity": "error",
                                "failing_rows": 3,
                                "row_numbers": [4, 9, 11],
                            },
                            {
                                "code": "REF-011",
                                "message": "NFA is Y or N",
                                "columns": ["nfa"],
                                "severity": "error",
                                "failing_rows": 1,
                                "row_numbers": [7],
                            },
                        ],
                    }
                ),
            },
        )
        conn.execute(
            sa.text(
                "INSERT INTO ops.file_events (file_id, state, reason, at) VALUES (:f, 'rejected', 'REF-003', now())"
            ),
            {"f": file_ids["2026Q2"]},
        )
        conn.execute(
            sa.text(
                "INSERT INTO ops.notifications (key, kind, feed_id, period_id, recipients, subject, text_body,"
                " html_body, state) VALUES"
                " ('receipt:council_referrals:2026Q3', 'receipt', 'council_referrals', '2026Q3', '[]', 's', 't', 'h',"
                "  'sent'),"
                " ('advance:police_ppn:2026Q3', 'advance', 'police_ppn', '2026Q3', '[]', 's', 't', 'h', 'sent'),"
                " ('due:police_ppn:2026Q3', 'due', 'police_ppn', '2026Q3', '[]', 's', 't', 'h', 'pending'),"
                " ('rejection:council_referrals:2026Q2:file=' || :f2, 'rejection', 'council_referrals', '2026Q2', '[]',"
                "  'Your referrals return was not accepted', 't', 'h', 'sent')"
            ),
            {"f2": str(file_ids["2026Q2"])},
        )
        conn.execute(sa.text("UPDATE ops.notifications SET sent_at = '2026-07-22 09:02Z' WHERE kind = 'rejection'"))
    clock.set_now(TODAY)


class _TableRows(HTMLParser):
    """The text of every table body row of a page, cell by cell, as a reader would see it."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag in ("th", "td") and self._in_body:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag in ("th", "td") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str) -> list[list[str]]:
    parser = _TableRows()
    parser.feed(html)
    return parser.rows


def test_airflow_finds_the_plugin_and_its_nav_link() -> None:
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse
    from airflow.plugins_manager import is_valid_plugin

    (entry_point,) = [ep for ep in entry_points(group="airflow.plugins") if ep.name == "partnerflow"]
    plugin_class = entry_point.load()
    assert plugin_class is PartnerflowPlugin
    assert is_valid_plugin(plugin_class)

    plugin = plugin_class()
    (view,) = [ExternalViewResponse.model_validate(v) for v in plugin.external_views]
    assert (view.name, view.destination, view.href) == ("Submissions", "nav", PAGE)
    assert view.url_route, "without a url_route the UI opens the page in a new tab instead of embedding it"
    assert [(app["name"], app["url_prefix"]) for app in plugin.fastapi_apps] == [("partnerflow", URL_PREFIX)]


def test_importing_the_plugin_stays_light() -> None:
    """Every Airflow component imports the plugin: it must not pull in FastAPI, the API security module or GX."""
    heavy = ["fastapi", "airflow.api_fastapi.core_api.security", "great_expectations", "pandas"]
    code = (
        "import json, sys; import partnerflow.airflow.plugin; "
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_every_route_refuses_requests_without_a_valid_token(auth_manager, client: TestClient) -> None:
    other_key = JWTGenerator(
        secret_key=secrets.token_urlsafe(64), valid_for=300, audience=auth_manager._get_jwt_audience()
    )
    forged = other_key.generate(
        SimpleAuthManager().serialize_user(SimpleAuthManagerUser(username="intruder", role="ADMIN"))
    )
    (mounted,) = [route for route in client.app.routes if getattr(route, "path", "") == URL_PREFIX]
    paths = [URL_PREFIX + route.path for route in mounted.app.routes]
    assert sorted(paths) == sorted([PAGE, JSON_PAGE, f"{PAGE}/files/{{file_id}}"])

    for path in (p.replace("{file_id}", "1") for p in paths):
        anonymous = client.get(path)
        assert anonymous.status_code == 401, path
        assert "Submissions" not in anonymous.text
        assert client.get(path, headers={"Authorization": f"Bearer {forged}"}).status_code in (401, 403), path
        assert get_with_ui_cookie(client, path, forged).status_code in (401, 403), path
    assert client.get(f"{URL_PREFIX}/docs").status_code == 404
    assert client.get(f"{URL_PREFIX}/openapi.json").status_code == 404


@pytest.mark.parametrize("role", ["viewer", "user", None])
def test_a_signed_in_user_without_the_op_or_admin_role_is_refused(
    auth_manager, client: TestClient, submissions, role: str | None
) -> None:
    """SimpleAuthManager has roles, not permissions: the partners' returns are for Op and Admin only."""
    token = token_for(auth_manager, username="someone", role=role)
    for path in (PAGE, JSON_PAGE, f"{PAGE}/files/1"):
        for response in (
            get_with_ui_cookie(client, path, token),
            client.get(path, headers={"Authorization": f"Bearer {token}"}),
        ):
            assert response.status_code == 403, path
            assert "Partnerflow Submissions" in response.json()["detail"]
            assert "Council" not in response.text
    for allowed in ("op", "admin", "ADMIN"):
        assert get_with_ui_cookie(client, PAGE, token_for(auth_manager, role=allowed)).status_code == 200


def test_under_fab_only_roles_holding_the_partnerflow_permission_see_the_page(
    fab_auth_manager, client: TestClient, submissions, capsys: pytest.CaptureFixture[str]
) -> None:
    """The compose deployment: airflow-init grants the permission to Admin and Op; other roles get 403 until
    an admin grants it to them (here with the same command, naming a custom role)."""
    assert access.main([]) == 0  # what airflow-init runs
    assert "held by: Admin, Op" in capsys.readouterr().out
    tokens = fab_tokens(
        fab_auth_manager, {"ada": "Admin", "otto": "Op", "vera": "Viewer", "uma": "User", "pam": "Performance officer"}
    )

    def status(username: str, path: str = JSON_PAGE) -> int:
        return client.get(path, headers={"Authorization": f"Bearer {tokens[username]}"}).status_code

    for path in (PAGE, JSON_PAGE, f"{PAGE}/files/1"):
        for username in ("vera", "uma", "pam"):
            assert status(username, path) == 403, (username, path)
        refused = get_with_ui_cookie(client, path, tokens["vera"])
        assert refused.status_code == 403
        assert "Partnerflow Submissions" in refused.json()["detail"]
    assert [status("ada"), status("otto")] == [200, 200]
    assert get_with_ui_cookie(client, PAGE, tokens["otto"]).status_code == 200

    assert access.main(["Performance officer"]) == 0
    fab_auth_manager.cache.clear()  # as [fab] cache_ttl (30 s) passing: FAB reads the user's roles again
    assert (status("pam"), status("vera")) == (200, 403)
    assert access.main(["No such role"]) == 1
    assert "no such Airflow role: No such role" in capsys.readouterr().out


def test_the_grant_command_leaves_other_auth_managers_alone(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__AUTH_MANAGER", SIMPLE_AUTH_MANAGER)
        assert access.main([]) == 0
    assert "Nothing to do" in capsys.readouterr().out


def test_a_signed_in_user_sees_the_matrix_in_the_embedded_page(auth_manager, client: TestClient, submissions) -> None:
    """The embedded page authenticates with the UI's own cookie, as the browser sends it to the iframe."""
    response = get_with_ui_cookie(client, PAGE, token_for(auth_manager))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "Q2 2026/27 (Jul–Sep 2026)" in response.text
    rows = table_rows(response.text)
    assert [row[0] for row in rows] == [
        "Council referrals and assessments Blanktown Council Children's Services",
        "Police PPNs and DA incidents with a child present Blanktown Police",
        "Council referrals and assessments Blanktown Council Children's Services",
    ]
    published, police, rejected = rows
    assert published[1].startswith("Late by 2 working days")
    assert published[2:] == ["Wed 21 Oct 2026", "1,234", "1", "1"]
    assert police[1] == "Overdue by 3 working days"
    assert police[2:] == ["Wed 21 Oct 2026", "", "0", "1 (1 waiting)"]
    # The rejection: its rules, how many rows, and when the partner was told; the file, its rules, a link.
    assert rejected[1].startswith(
        "Rejected: REF-003 × 3, REF-011 × 1; partner told Wed 22 Jul 10:02; overdue by 68 working days"
    )
    file_id = body_file_id(response.text, "referrals_2026Q2.csv")
    assert f"File {file_id}: referrals_2026Q2.csv — rejected" in rejected[1]
    assert "Rules: REF-003 (error, 3 rows), REF-011 (error, 1 rows)" in rejected[1]


def body_file_id(html: str, name: str) -> int:
    import re

    return int(re.search(rf'href="submissions/files/(\d+)">File \d+</a>: {re.escape(name)}', html).group(1))


def test_a_files_page_shows_its_report_history_and_emails(auth_manager, client: TestClient, submissions) -> None:
    page = get_with_ui_cookie(client, PAGE, token_for(auth_manager)).text
    file_id = body_file_id(page, "referrals_2026Q2.csv")
    response = get_with_ui_cookie(client, f"{URL_PREFIX}/submissions/files/{file_id}", token_for(auth_manager))
    assert response.status_code == 200
    rows = table_rows(response.text)
    assert rows[0] == ["REF-003", "error", "referral_date", "3 (rows 4, 9, 11)", "Referral date in the period"]
    assert rows[1] == ["REF-011", "error", "nfa", "1 (rows 7)", "NFA is Y or N"]
    assert rows[2][1:] == ["rejected", "REF-003"]
    assert "Your referrals return was not accepted" in response.text
    assert "(rejection; sent Wed 22 Jul 10:02)" in response.text
    missing = get_with_ui_cookie(client, f"{URL_PREFIX}/submissions/files/999999", token_for(auth_manager))
    assert missing.status_code == 404


def test_the_json_matrix_with_a_bearer_token(auth_manager, client: TestClient, submissions) -> None:
    response = client.get(JSON_PAGE, headers={"Authorization": f"Bearer {token_for(auth_manager)}"})

    assert response.status_code == 200
    body = response.json()
    assert body["as_of"] == "2026-10-26"
    assert [(s["period_id"], s["feed_id"], s["state"], s["overdue"]) for s in body["submissions"]] == [
        ("2026Q3", "council_referrals", "published", False),
        ("2026Q3", "police_ppn", "expected", True),
        ("2026Q2", "council_referrals", "rejected", True),
    ]
    published = body["submissions"][0]
    assert (published["rows_published"], published["latest_file"], published["notifications_sent"]) == (
        1234,
        "referrals_2026Q3.csv",
        1,
    )


def test_a_revoked_token_is_refused(auth_manager, client: TestClient, submissions) -> None:
    """Signing out of Airflow revokes the token; the page must stop accepting it too."""
    token = token_for(auth_manager)
    assert get_with_ui_cookie(client, PAGE, token).status_code == 200

    auth_manager.revoke_token(token)

    assert get_with_ui_cookie(client, PAGE, token).status_code in (401, 403)


def test_an_empty_warehouse_says_so(auth_manager, client: TestClient, warehouse_url: str) -> None:
    response = get_with_ui_cookie(client, PAGE, token_for(auth_manager))

    assert response.status_code == 200
    assert "No submissions recorded yet" in response.text
    assert table_rows(response.text) == []


def test_an_unconfigured_warehouse_is_a_clear_503(
    auth_manager, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PARTNERFLOW_WAREHOUSE_URL", raising=False)

    response = get_with_ui_cookie(client, PAGE, token_for(auth_manager))

    assert response.status_code == 503
    assert "warehouse is not reachable" in response.text
