"""The embedded development services behave like the real servers they stand in for."""

from __future__ import annotations

import asyncio
import base64
import email
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from pathlib import Path
from typing import Any

import httpx
import paramiko
import psutil
import psycopg
import pytest
from python_http_client.exceptions import (
    BadRequestsError,
    InternalServerError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Attachment, Mail

from partnerflow_dev.partner_api import ApiFault, PartnerApi
from partnerflow_dev.postgres import EmbeddedPostgres
from partnerflow_dev.sendgrid_sink import MailFault, SendgridSink
from partnerflow_dev.sftp_server import KeyPaths, SftpServer, ensure_keys

HOST = "127.0.0.1"


def wait_until(condition: Any, timeout: float = 10.0, message: str = "condition") -> None:
    """Poll `condition` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {message}")
        time.sleep(0.05)


# --- PostgreSQL ---------------------------------------------------------------------------------


@contextmanager
def postgres_scratch_dir() -> Iterator[Path]:
    """A directory for a PostgreSQL data directory, removed afterwards.

    Not under pytest's tmp_path: as root the server runs as another user, which must traverse the
    directory's parents, and every pytest session that starts resets /tmp/pytest-of-<user> to 0700.
    """
    path = Path(tempfile.mkdtemp(prefix="partnerflow-pg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    with postgres_scratch_dir() as scratch, EmbeddedPostgres(data_dir=scratch / "data") as server:
        yield server


def test_postgres_accepts_connections_as_superuser(postgres: EmbeddedPostgres) -> None:
    with psycopg.connect(postgres.dsn("postgres")) as conn:
        user, max_connections, address = conn.execute(
            "SELECT current_user, current_setting('max_connections'), inet_server_addr()::text"
        ).fetchone()
    assert user == "postgres"
    assert int(max_connections) >= 200
    assert address.startswith(HOST)
    assert postgres.url("warehouse") == f"postgresql+psycopg://postgres@{HOST}:{postgres.port}/warehouse"


def test_postgres_create_database_is_idempotent(postgres: EmbeddedPostgres) -> None:
    postgres.create_database("pf_devstack_test")
    postgres.create_database("pf_devstack_test")

    with psycopg.connect(postgres.dsn("pf_devstack_test")) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("pf_devstack_test",)


def test_postgres_start_reuses_a_running_server(postgres: EmbeddedPostgres) -> None:
    second = EmbeddedPostgres(data_dir=postgres.data_dir)
    second.start()

    assert second.port == postgres.port
    assert second.pid == postgres.pid


def test_postgres_stop_leaves_no_process() -> None:
    with postgres_scratch_dir() as scratch:
        server = EmbeddedPostgres(data_dir=scratch / "data")
        with server:
            port = server.port
            postmaster = psutil.Process(server.pid)
            processes = [postmaster, *postmaster.children(recursive=True)]
            assert len(processes) > 1

        wait_until(lambda: not any(map(is_alive, processes)), message="the PostgreSQL processes to exit")
        assert server.pid is None
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(f"postgresql://postgres@{HOST}:{port}/postgres", connect_timeout=5)


def is_alive(process: psutil.Process) -> bool:
    """Running and not a zombie (an orphaned postmaster is reaped by PID 1, which may take its time)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- SFTP ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPaths:
    return ensure_keys(tmp_path_factory.mktemp("ssh"))


@pytest.fixture(scope="module")
def sftp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("sftp")
    (base / "outside.txt").write_text("not for partners")
    root = base / "root"
    (root / "police").mkdir(parents=True)
    (root / "police" / "ppn_2026Q1.csv").write_text("measure_code,grade,value\nPPN,H,12\n")
    (root / "police" / "big.bin").write_bytes(os.urandom(1024 * 1024))
    (root / "police" / "escape.txt").symlink_to(base / "outside.txt")
    return root


@pytest.fixture(scope="module")
def sftp(sftp_root: Path, keys: KeyPaths) -> Iterator[SftpServer]:
    with SftpServer(root=sftp_root, host_key=keys.host_key, authorized_keys=keys.authorized_keys) as server:
        yield server


@pytest.fixture(autouse=True)
def _healthy_sftp(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sftp" in request.fixturenames:
        request.getfixturevalue("sftp").faults.reset()


def pin(client: paramiko.SSHClient, port: int, host_key_line: str) -> None:
    key_type, data = host_key_line.split()[:2]
    client.get_host_keys().add(f"[{HOST}]:{port}", key_type, paramiko.Ed25519Key(data=base64.b64decode(data)))


def connect(
    port: int,
    client_key: Path,
    host_key_line: str | None,
    *,
    banner_timeout: float = 10,
) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if host_key_line is not None:
        pin(client, port, host_key_line)
    try:
        client.connect(
            HOST,
            port=port,
            username="police",
            key_filename=str(client_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
            banner_timeout=banner_timeout,
            auth_timeout=10,
        )
    except BaseException:
        client.close()
        raise
    return client


def test_sftp_lists_and_downloads_with_the_pinned_host_key(sftp: SftpServer, keys: KeyPaths, tmp_path: Path) -> None:
    with connect(sftp.port, keys.client_key, keys.host_key_line) as client:
        files = client.open_sftp()
        assert sorted(files.listdir("/police")) == ["big.bin", "escape.txt", "ppn_2026Q1.csv"]
        files.get("/police/ppn_2026Q1.csv", str(tmp_path / "ppn.csv"))

    assert (tmp_path / "ppn.csv").read_text() == "measure_code,grade,value\nPPN,H,12\n"


def test_sftp_host_key_line_is_the_public_host_key(keys: KeyPaths) -> None:
    key_type, data = keys.host_key_line.split()
    assert key_type == "ssh-ed25519"
    assert paramiko.Ed25519Key(filename=str(keys.host_key)).get_base64() == data


def test_sftp_refuses_an_unknown_or_different_host_key(sftp: SftpServer, keys: KeyPaths, tmp_path: Path) -> None:
    other = ensure_keys(tmp_path / "other")

    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        connect(sftp.port, keys.client_key, None)
    with pytest.raises(paramiko.BadHostKeyException):
        connect(sftp.port, keys.client_key, other.host_key_line)


def test_sftp_refuses_a_key_that_is_not_authorized(sftp: SftpServer, keys: KeyPaths, tmp_path: Path) -> None:
    stranger = ensure_keys(tmp_path / "stranger")

    with pytest.raises(paramiko.AuthenticationException):
        connect(sftp.port, stranger.client_key, keys.host_key_line)


def test_sftp_revoking_a_key_refuses_the_next_connection(sftp_root: Path, keys: KeyPaths, tmp_path: Path) -> None:
    authorized = tmp_path / "authorized_keys"
    shutil.copy(keys.authorized_keys, authorized)
    with SftpServer(root=sftp_root, host_key=keys.host_key, authorized_keys=authorized) as server:
        connect(server.port, keys.client_key, keys.host_key_line).close()
        authorized.write_text("")
        with pytest.raises(paramiko.AuthenticationException):
            connect(server.port, keys.client_key, keys.host_key_line)


def test_sftp_cannot_escape_the_root(sftp: SftpServer, keys: KeyPaths, tmp_path: Path) -> None:
    with connect(sftp.port, keys.client_key, keys.host_key_line) as client:
        files = client.open_sftp()
        assert files.listdir("/../..") == files.listdir("/")
        assert files.normalize("../../..") == "/"
        with pytest.raises(FileNotFoundError):
            files.get("../outside.txt", str(tmp_path / "a"))
        with pytest.raises(FileNotFoundError):
            files.get("/police/../../outside.txt", str(tmp_path / "b"))
        with pytest.raises(PermissionError):
            files.get("/police/escape.txt", str(tmp_path / "c"))
        with pytest.raises(OSError):
            files.symlink("/etc/passwd", "/police/passwd")


def test_sftp_drop_fault_ends_the_download_with_an_error(
    sftp: SftpServer, sftp_root: Path, keys: KeyPaths, tmp_path: Path
) -> None:
    sftp.faults.drop_after_bytes = 64 * 1024
    with connect(sftp.port, keys.client_key, keys.host_key_line) as client:
        with pytest.raises((paramiko.SSHException, EOFError, OSError)):
            client.open_sftp().get("/police/big.bin", str(tmp_path / "dropped.bin"))

    sftp.faults.reset()
    with connect(sftp.port, keys.client_key, keys.host_key_line) as client:
        client.open_sftp().get("/police/big.bin", str(tmp_path / "whole.bin"))
    assert (tmp_path / "whole.bin").read_bytes() == (sftp_root / "police" / "big.bin").read_bytes()


def test_sftp_hang_fault_accepts_but_never_answers(sftp: SftpServer, keys: KeyPaths) -> None:
    sftp.faults.hang = True
    with pytest.raises(paramiko.SSHException, match="banner"):
        connect(sftp.port, keys.client_key, keys.host_key_line, banner_timeout=0.5)


def test_sftp_stall_reads_fault_hangs_mid_download(sftp: SftpServer, keys: KeyPaths) -> None:
    with connect(sftp.port, keys.client_key, keys.host_key_line) as client:
        files = client.open_sftp()
        files.get_channel().settimeout(0.5)
        sftp.faults.stall_reads = True
        with pytest.raises(TimeoutError):
            files.open("/police/ppn_2026Q1.csv").read()


@pytest.fixture
def airflow_sftp_connection(sftp: SftpServer, keys: KeyPaths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """An Airflow connection to the embedded server, given as `AIRFLOW_CONN_<ID>` JSON."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    connection = {
        "conn_type": "sftp",
        "host": HOST,
        "port": sftp.port,
        "login": "police",
        "extra": {"host_key": keys.host_key_line, "key_file": str(keys.client_key)},
    }
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_SFTP", json.dumps(connection))
    return "partner_sftp"


def test_airflow_sftp_hooks_connect_with_the_pinned_host_key(airflow_sftp_connection: str, tmp_path: Path) -> None:
    from airflow.providers.sftp.hooks.sftp import SFTPHook, SFTPHookAsync

    hook = SFTPHook(ssh_conn_id=airflow_sftp_connection)
    try:
        assert "ppn_2026Q1.csv" in (hook.list_directory("/police") or [])
        hook.retrieve_file("/police/ppn_2026Q1.csv", str(tmp_path / "ppn.csv"))
    finally:
        hook.close_conn()
    assert (tmp_path / "ppn.csv").read_text().startswith("measure_code")

    async_hook = SFTPHookAsync(sftp_conn_id=airflow_sftp_connection)
    names = asyncio.run(async_hook.list_directory("/police"))
    assert "ppn_2026Q1.csv" in (names or [])


# --- Partner API --------------------------------------------------------------------------------

TOKEN = "police-api-token"


@pytest.fixture(scope="module")
def partner_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartnerApi]:
    with PartnerApi(root=tmp_path_factory.mktemp("partner_api"), token=TOKEN, page_size=100) as api:
        api.submit("ppn", "2026-Q1", [{"measure_code": "PPN", "grade": "H", "value": n} for n in range(250)])
        yield api


@pytest.fixture(autouse=True)
def _healthy_partner_api(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "partner_api" in request.fixturenames:
        request.getfixturevalue("partner_api").faults.clear()


def get_page(api: PartnerApi, page: int, *, token: str | None = TOKEN, path: str = "ppn/2026-Q1") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{api.url}/v1/returns/{path}", params={"page": page}, headers=headers, timeout=10)


def test_partner_api_requires_the_bearer_token(partner_api: PartnerApi) -> None:
    missing = get_page(partner_api, 1, token=None)
    wrong = get_page(partner_api, 1, token="guess")

    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    assert wrong.json()["error"] == "invalid_token"
    assert "Bearer" in wrong.headers["WWW-Authenticate"]


def test_partner_api_serves_the_return_in_pages(partner_api: PartnerApi) -> None:
    pages = [get_page(partner_api, n).json() for n in (1, 2, 3)]

    assert [p["page"] for p in pages] == [1, 2, 3]
    assert {(p["dataset"], p["period"], p["total_pages"], p["total_records"]) for p in pages} == {
        ("ppn", "2026-Q1", 3, 250)
    }
    assert [len(p["records"]) for p in pages] == [100, 100, 50]
    assert [r["value"] for p in pages for r in p["records"]] == list(range(250))
    assert get_page(partner_api, 4).status_code == 400


def test_partner_api_says_404_until_the_partner_submits(partner_api: PartnerApi) -> None:
    response = get_page(partner_api, 1, path="yjb_kpis/2026-Q1")
    assert response.status_code == 404
    assert response.json()["error"] == "not_submitted"

    partner_api.submit("yjb_kpis", "2026-Q1", [{"kpi_code": "YJ01", "numerator": 3, "denominator": 9}])
    assert get_page(partner_api, 1, path="yjb_kpis/2026-Q1").json()["total_records"] == 1


def test_partner_api_faults_come_in_the_order_queued(partner_api: PartnerApi) -> None:
    partner_api.faults.add(ApiFault.RATE_LIMITED, times=2)
    partner_api.faults.add(ApiFault.SERVER_ERROR)
    partner_api.faults.add(ApiFault.LOGIN_PAGE)
    partner_api.faults.add(ApiFault.TRUNCATED_JSON)
    partner_api.faults.add(ApiFault.TOKEN_EXPIRED)

    limited = [get_page(partner_api, 1) for _ in range(2)]
    assert [r.status_code for r in limited] == [429, 429]
    assert limited[0].headers["Retry-After"] == "1"
    assert get_page(partner_api, 1).status_code == 500
    login = get_page(partner_api, 1)
    assert login.status_code == 200 and login.headers["Content-Type"].startswith("text/html")
    truncated = get_page(partner_api, 1)
    assert truncated.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.text)
    assert get_page(partner_api, 1).status_code == 401
    assert get_page(partner_api, 1).status_code == 200


def test_partner_api_repeated_page_fault_serves_the_previous_page_again(partner_api: PartnerApi) -> None:
    first = get_page(partner_api, 1).json()
    partner_api.faults.add(ApiFault.REPEATED_PAGE)

    second = get_page(partner_api, 2).json()

    assert second["page"] == 2
    assert second["records"] == first["records"]


# --- SendGrid sink ------------------------------------------------------------------------------

API_KEY = "SG.devstack-test-key"


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SendgridSink]:
    with SendgridSink(out_dir=tmp_path / "outbox", api_key=API_KEY) as server:
        yield server


def receipt_mail() -> Mail:
    mail = Mail(
        from_email=("noreply@blanktown.example", "Blanktown partnerflow"),
        to_emails=["analyst@police.example"],
        subject="Return received: police PPN 2026-Q1",
        plain_text_content="We received your return.",
        html_content="<p>We received your <strong>return</strong>.</p>",
    )
    mail.attachment = Attachment(
        file_content=base64.b64encode(b"%PDF-1.4 test").decode(),
        file_name="receipt.pdf",
        file_type="application/pdf",
        disposition="attachment",
    )
    return mail


def test_sink_accepts_mail_from_the_real_sendgrid_client(sink: SendgridSink) -> None:
    mail = receipt_mail()

    response = SendGridAPIClient(API_KEY, host=sink.url).send(mail)

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert message_id
    assert sink.messages() == [mail.get()]
    stem = sink.message_files()[0].stem
    assert stem == f"000001-{message_id}"
    eml = email.message_from_bytes((sink.out_dir / f"{stem}.eml").read_bytes(), policy=policy.default)
    assert eml["To"] == "analyst@police.example"
    assert eml["Subject"] == "Return received: police PPN 2026-Q1"
    assert eml.get_body(("plain",)).get_content().strip() == "We received your return."
    assert "<strong>return</strong>" in eml.get_body(("html",)).get_content()
    [attachment] = list(eml.iter_attachments())
    assert attachment.get_filename() == "receipt.pdf"
    assert attachment.get_content() == b"%PDF-1.4 test"
    html = (sink.out_dir / f"{stem}.html").read_text()
    assert html == "<p>We received your <strong>return</strong>.</p>"


def test_sink_refuses_a_missing_or_wrong_key_as_sendgrid_does(sink: SendgridSink) -> None:
    with pytest.raises(UnauthorizedError) as wrong:
        SendGridAPIClient("SG.wrong", host=sink.url).send(receipt_mail())
    missing = httpx.post(f"{sink.url}/v3/mail/send", json=receipt_mail().get(), timeout=10)

    assert json.loads(wrong.value.body) == {
        "errors": [
            {
                "message": "The provided authorization grant is invalid, expired, or revoked",
                "field": None,
                "help": None,
            }
        ]
    }
    assert missing.status_code == 401
    assert missing.json()["errors"][0]["message"] == "authorization required"
    assert sink.messages() == []


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


def _with_recipients(body: dict[str, Any], count: int) -> dict[str, Any]:
    to = [{"email": f"person{n}@partner.example"} for n in range(count)]
    return {**body, "personalizations": [{"to": to}]}


REFUSED_BODIES = {
    "no personalizations": (lambda b: _without(b, "personalizations"), "personalizations"),
    "no from": (lambda b: _without(b, "from"), "from.email"),
    "no subject": (lambda b: _without(b, "subject"), "subject"),
    "no content": (lambda b: _without(b, "content"), "content"),
    "empty content": (lambda b: {**b, "content": [{"type": "text/plain", "value": ""}]}, "content.0.value"),
    "invalid address": (
        lambda b: {**b, "personalizations": [{"to": [{"email": "not-an-address"}]}]},
        "personalizations.0.to.0.email",
    ),
    "1001 recipients": (lambda b: _with_recipients(b, 1001), "personalizations"),
}


@pytest.mark.parametrize("case", REFUSED_BODIES, ids=list(REFUSED_BODIES))
def test_sink_refuses_what_sendgrid_refuses(sink: SendgridSink, case: str) -> None:
    change, field = REFUSED_BODIES[case]
    body = change(receipt_mail().get())

    with pytest.raises(BadRequestsError) as refused:
        SendGridAPIClient(API_KEY, host=sink.url).send(body)

    errors = json.loads(refused.value.body)["errors"]
    assert all(set(error) == {"message", "field", "help"} for error in errors)
    assert field in [error["field"] for error in errors]
    assert sink.messages() == []


def test_sink_accepts_1000_recipients(sink: SendgridSink) -> None:
    body = _with_recipients(receipt_mail().get(), 1000)
    assert SendGridAPIClient(API_KEY, host=sink.url).send(body).status_code == 202


def test_sink_faults_answer_without_storing(sink: SendgridSink) -> None:
    client = SendGridAPIClient(API_KEY, host=sink.url)
    sink.faults.add(MailFault.RATE_LIMITED)
    sink.faults.add(MailFault.SERVER_ERROR)
    sink.faults.add(MailFault.BAD_REQUEST)
    sink.faults.add(MailFault.UNAUTHORIZED)

    with pytest.raises(TooManyRequestsError) as limited:
        client.send(receipt_mail())
    with pytest.raises(InternalServerError):
        client.send(receipt_mail())
    with pytest.raises(BadRequestsError) as bad:
        client.send(receipt_mail())
    with pytest.raises(UnauthorizedError):
        client.send(receipt_mail())

    assert int(limited.value.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert json.loads(bad.value.body)["errors"][0].keys() == {"message", "field", "help"}
    assert sink.messages() == []
    assert client.send(receipt_mail()).status_code == 202
    assert len(sink.messages()) == 1


def test_sink_accept_then_timeout_stores_the_mail_the_client_gave_up_on(sink: SendgridSink) -> None:
    client = SendGridAPIClient(API_KEY, host=sink.url)
    sink.faults.add(MailFault.ACCEPT_THEN_TIMEOUT)

    with pytest.raises(OSError):
        client.client.mail.send.post(request_body=receipt_mail().get(), timeout=0.5)
    assert len(sink.messages()) == 1

    client.send(receipt_mail())
    assert len(sink.messages()) == 2


def test_sink_sandbox_mode_validates_without_storing(sink: SendgridSink) -> None:
    body = {**receipt_mail().get(), "mail_settings": {"sandbox_mode": {"enable": True}}}

    response = SendGridAPIClient(API_KEY, host=sink.url).send(body)

    assert response.status_code == 200
    assert sink.messages() == []
