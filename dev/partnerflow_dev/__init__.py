"""Embedded development services (PostgreSQL, SFTP, partner API, SendGrid sink) for demos and tests."""
