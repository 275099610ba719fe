"""Notifications: messages built from templates, written to the outbox with the state change that causes
them, and sent once through SendGrid by a sender that drains the outbox; when SendGrid itself fails, the
officer and the engineers hear of it by a second route (``fallback``, SMTP)."""
