"""The workflows app's tables: flows (workflows, versions, triggers, runs) and the outbox."""
