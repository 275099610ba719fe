"""The embedded stack: PostgreSQL, the partners' SFTP drop and API, and the SendGrid sink, wired together.

``DevStack.environment()`` is the whole contract with the rest of partnerflow: the same variables, pointed
at real servers, are how production is configured (see the README).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from partnerflow.core.config import HttpTransport, Partnership, SftpTransport
from partnerflow_dev.partner_api import PartnerApi
from partnerflow_dev.postgres import EmbeddedPostgres
from partnerflow_dev.sendgrid_sink import SendgridSink
from partnerflow_dev.service import Service
from partnerflow_dev.sftp_server import SftpServer, client_connection, ensure_keys
from partnerflow_dev.smtp_sink import SmtpSink

WAREHOUSE_DB = "warehouse"
AIRFLOW_DB = "airflow"


class DevStack(Service):
    """Every service partnerflow talks to, on loopback, with state under ``<var>/devstack``."""

    def __init__(
        self,
        *,
        var: Path,
        partnership: Partnership,
        postgres: EmbeddedPostgres | None = None,
        warehouse_db: str = WAREHOUSE_DB,
        airflow_db: str = AIRFLOW_DB,
    ):
        """``postgres`` shares a server someone else owns (the tests' session server); it is not stopped here."""
        self.var = var
        self.home = var / "devstack"
        self.partnership = partnership
        self.warehouse_db = warehouse_db
        self.airflow_db = airflow_db
        self._owns_postgres = postgres is None
        self.postgres = postgres or EmbeddedPostgres(data_dir=self.home / "pgdata")
        self.keys = ensure_keys(self.home / "ssh")
        self.secrets = self._secrets()
        self.sftp = SftpServer(
            root=self.home / "sftp", host_key=self.keys.host_key, authorized_keys=self.keys.authorized_keys
        )
        self.partner_api = PartnerApi(root=self.home / "partner_api", token=self.secrets["partner_api_token"])
        self.sink = SendgridSink(out_dir=var / "sink", api_key=self.secrets["sendgrid_api_key"])
        self.smtp = SmtpSink(out_dir=var / "smtp")  # the second route, for when SendGrid itself fails

    def start(self) -> None:
        self.postgres.start()
        for database in (self.warehouse_db, self.airflow_db):
            self.postgres.create_database(database)
        self.start_services()

    def stop(self) -> None:
        self.stop_services()
        if self._owns_postgres:
            self.postgres.stop()

    def start_services(self) -> None:
        """Everything but PostgreSQL: the partners' SFTP drops and API, the SendGrid sink, the SMTP sink."""
        for feed in self.partnership.feeds:
            if isinstance(feed.transport, SftpTransport):
                self.drop_dir(feed.transport.directory).mkdir(parents=True, exist_ok=True)
        for service in (self.sftp, self.partner_api, self.sink, self.smtp):
            service.start()

    def stop_services(self) -> None:
        for service in (self.smtp, self.sink, self.partner_api, self.sftp):
            service.stop()

    def drop_dir(self, remote_directory: str) -> Path:
        """The local folder behind a remote SFTP directory (what a partner's upload writes into)."""
        return self.home / "sftp" / remote_directory.strip("/")

    def environment(self) -> dict[str, str]:
        """The settings every partnerflow process needs: warehouse, secrets, mail, and Airflow connections."""
        env = {
            "PARTNERFLOW_VAR": str(self.var),
            "PARTNERFLOW_ENVIRONMENT": "development",
            "PARTNERFLOW_WAREHOUSE_URL": self.postgres.url(self.warehouse_db),
            "PARTNERFLOW_PSEUDONYM_KEY": self.secrets["pseudonym_key"],
            "PARTNERFLOW_SENDGRID_API_KEY": self.secrets["sendgrid_api_key"],
            "PARTNERFLOW_SENDGRID_HOST": self.sink.url,
            "AIRFLOW_CONN_PARTNERFLOW_SMTP": json.dumps(self.smtp.connection()),
        }
        for feed in self.partnership.feeds:
            transport = feed.transport
            if isinstance(transport, SftpTransport):
                connection = client_connection(self.sftp.host, self.sftp.port, self.keys)
            else:
                assert isinstance(transport, HttpTransport)
                connection = {
                    "conn_type": "http",
                    "schema": "http",
                    "host": self.partner_api.host,
                    "port": self.partner_api.port,
                    "password": self.secrets["partner_api_token"],
                }
            env[f"AIRFLOW_CONN_{transport.connection.upper()}"] = json.dumps(connection)
        return env

    def _secrets(self) -> dict[str, str]:
        """Development secrets, generated once and kept with the stack (production uses a secrets backend)."""
        path = self.home / "secrets.json"
        if path.exists():
            return json.loads(path.read_text())
        self.home.mkdir(parents=True, exist_ok=True)
        values = {
            "pseudonym_key": secrets.token_hex(32),
            "sendgrid_api_key": "SG.dev-" + secrets.token_urlsafe(24),
            "partner_api_token": secrets.token_urlsafe(24),
        }
        path.write_text(json.dumps(values, indent=2))
        path.chmod(0o600)
        return values
