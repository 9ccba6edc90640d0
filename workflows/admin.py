"""The workflows app's admin pages.

The outbox's (deliveries, destinations) are in admin_outbox.py."""

from workflows import admin_outbox  # noqa: F401 (registers the outbox's admin pages)
