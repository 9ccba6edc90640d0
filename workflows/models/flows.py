"""Workflows, their immutable published versions, the rules that trigger them, and runs."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models


class Workflow(models.Model):
    """A workflow: an editable draft graph, and the published version its triggers run."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True, help_text="A disabled workflow never runs.")
    draft = models.JSONField(
        default=dict,
        help_text='The graph being edited: {"nodes": [...], "edges": [...]}; runs use the published version.',
    )
    published = models.ForeignKey(
        "WorkflowVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The version triggers run: the latest published one, or an earlier one after a rollback.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from workflows.engine.graph import GraphInvalid, parse_graph

        try:
            parse_graph(self.draft)
        except GraphInvalid as exc:
            raise ValidationError({"draft": list(exc.messages)}) from None


class WorkflowVersion(models.Model):
    """A published graph. Immutable: publishing makes a new version, a rollback points the
    workflow at an earlier one."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    graph = models.JSONField()
    checksum = models.CharField(max_length=64)
    published_by = models.CharField(max_length=150, blank=True)
    published_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [models.UniqueConstraint(fields=["workflow", "number"], name="one_number_per_workflow")]

    def __str__(self) -> str:
        return f"{self.workflow.name} v{self.number}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("a published workflow version cannot change; publish a new one")
        super().save(*args, **kwargs)


class OncePer(models.TextChoices):
    ALWAYS = "", "every matching event"
    PROFILE = "profile", "once per profile"
    SESSION = "session", "once per session"


class TriggerRule(models.Model):
    """When an event of this type (from this source, matching this condition) is stored,
    run the workflow's published version."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="triggers")
    name = models.CharField(max_length=200, blank=True)
    event_type = models.CharField(max_length=255, db_index=True)
    source = models.ForeignKey(
        "tracking.EventSource",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        help_text="Only events from this source; empty: from every source.",
    )
    condition = models.JSONField(
        null=True,
        blank=True,
        help_text='Optional, the rules\' format: {"path": "event@properties.total", "op": "gte", "value": 100}.',
    )
    priority = models.IntegerField(default=100, help_text="Workflows of one event run one after another, lower first.")
    enabled = models.BooleanField(default=True)
    once_per = models.CharField(max_length=10, choices=OncePer.choices, default=OncePer.ALWAYS, blank=True)
    once_ttl_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="With once per profile/session: may run again after this long; empty: never."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "id"]

    def __str__(self) -> str:
        return self.name or f"{self.event_type} -> {self.workflow.name}"

    def clean(self) -> None:
        from tracking.rules.conditions import check_condition

        if self.condition is not None:
            try:
                check_condition(self.condition)
            except ValueError as exc:
                raise ValidationError({"condition": str(exc)}) from None


class TriggerOnce(models.Model):
    """A claim that a once-per trigger ran for a profile or session (until it expires)."""

    trigger = models.ForeignKey(TriggerRule, on_delete=models.CASCADE)
    scope_key = models.CharField(max_length=255)
    run_key = models.CharField(max_length=64)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["trigger", "scope_key"], name="one_claim_per_scope")]


class RunStatus(models.TextChoices):
    OK = "ok", "ok"
    FAILED = "failed", "failed"


class WorkflowRun(models.Model):
    """One run of a workflow version for one event, with its per-node trace. `run_key` derives
    from the event and the trigger: a redelivered message finds its run and runs nothing twice."""

    run_key = models.CharField(max_length=64, unique=True)
    workflow = models.ForeignKey(Workflow, null=True, on_delete=models.SET_NULL, related_name="runs")
    workflow_name = models.CharField(max_length=200)
    version = models.ForeignKey(WorkflowVersion, null=True, on_delete=models.SET_NULL, related_name="runs")
    version_number = models.PositiveIntegerField()
    trigger = models.ForeignKey(TriggerRule, null=True, on_delete=models.SET_NULL, related_name="runs")
    event_id = models.CharField(max_length=255, db_index=True)
    event_type = models.CharField(max_length=255)
    profile_id = models.CharField(max_length=255, null=True, blank=True, db_index=True)
    session_id = models.CharField(max_length=255, null=True, blank=True)
    status = models.CharField(max_length=10, choices=RunStatus.choices, db_index=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(db_index=True)
    duration_ms = models.FloatField()
    trace = models.JSONField(default=list)
    # What the run changed, kept until the storage job carrying it was published: a worker
    # killed in between publishes it again from here (the store applies it once).
    changes = models.JSONField(null=True, blank=True)
    published = models.BooleanField(default=False)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["workflow", "status", "started_at"])]

    def __str__(self) -> str:
        return f"{self.workflow_name} v{self.version_number} on {self.event_type} ({self.status})"
