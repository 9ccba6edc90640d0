"""Admin of the workflows: drafts, published versions (publish, roll back), triggers, the
graph as a picture, import/export, test runs on a sample event, and the runs."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from storage.store import get_store
from workflows import selectors
from workflows.definitions import DefinitionInvalid, export_workflow, import_workflow, publish, rollback, test_run
from workflows.engine.graph import GraphInvalid, graph_to_svg, parse_graph
from workflows.models import TriggerRule, Workflow, WorkflowRun, WorkflowVersion

SAMPLE_EVENT = {
    "id": "sample-event",
    "type": "purchase",
    "source": {"id": "locust-test"},
    "session": {"id": "sample-session"},
    "profile": {"id": "sample-profile"},
    "properties": {"total": 150},
    "context": {},
}


def svg_of(graph: dict[str, Any]) -> str:
    try:
        return mark_safe(graph_to_svg(parse_graph(graph)))  # graph_to_svg escapes every text
    except GraphInvalid as exc:
        return format_html("<p class='errornote'>The graph cannot be drawn: {}</p>", "; ".join(exc.messages))


class TriggerInline(admin.TabularInline):
    model = TriggerRule
    extra = 0
    fields = ["name", "event_type", "source", "condition", "priority", "enabled", "once_per", "once_ttl_seconds"]


class VersionInline(admin.TabularInline):
    model = WorkflowVersion
    extra = 0
    can_delete = False
    fields = ["number", "checksum", "published_by", "published_at", "rollback_link"]
    readonly_fields = fields
    ordering = ["-number"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="")
    def rollback_link(self, version: WorkflowVersion) -> str:
        if version.workflow.published_id == version.pk:
            return "runs now"
        url = reverse("admin:workflows_workflow_rollback", args=[version.workflow_id, version.pk])
        # A POST through the page's own rollback form (workflow_change_form.html): this row
        # sits inside the change form, where a form of its own cannot be.
        return format_html(
            '<button type="submit" class="button" form="rollback-version" formaction="{}">'
            "Roll back to this version</button>",
            url,
        )


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "enabled",
        "published_version",
        "runs_24h",
        "failures_24h",
        "p50_ms",
        "p95_ms",
        "updated_at",
    ]
    list_filter = ["enabled"]
    search_fields = ["name", "description"]
    readonly_fields = ["published", "draft_picture", "published_picture", "created_at", "updated_at"]
    fields = ["name", "description", "enabled", "draft", "draft_picture", "published", "published_picture"]
    inlines = [TriggerInline, VersionInline]
    change_form_template = "admin/workflows/workflow_change_form.html"
    change_list_template = "admin/workflows/workflow_change_list.html"

    # --- list columns: the last 24 hours of runs --------------------------------------------

    def _stats(self, workflow: Workflow) -> selectors.RunStats:
        cache = self.__dict__.setdefault("_stats_cache", {})
        if workflow.pk not in cache:
            cache[workflow.pk] = selectors.run_stats(
                workflow_id=workflow.pk, since=timezone.now() - timedelta(hours=24)
            )
        return cache[workflow.pk]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        self.__dict__["_stats_cache"] = {}
        return super().changelist_view(request, extra_context)

    @admin.display(description="published")
    def published_version(self, workflow: Workflow) -> str:
        return f"v{workflow.published.number}" if workflow.published else "not published"

    @admin.display(description="runs (24 h)")
    def runs_24h(self, workflow: Workflow) -> int:
        return self._stats(workflow).runs

    @admin.display(description="failures (24 h)")
    def failures_24h(self, workflow: Workflow) -> int:
        return self._stats(workflow).failures

    @admin.display(description="p50 ms")
    def p50_ms(self, workflow: Workflow) -> str:
        value = self._stats(workflow).p50_ms
        return "-" if value is None else f"{value:.1f}"

    @admin.display(description="p95 ms")
    def p95_ms(self, workflow: Workflow) -> str:
        value = self._stats(workflow).p95_ms
        return "-" if value is None else f"{value:.1f}"

    @admin.display(description="draft")
    def draft_picture(self, workflow: Workflow) -> str:
        return svg_of(workflow.draft) if workflow.draft else "-"

    @admin.display(description="published version")
    def published_picture(self, workflow: Workflow) -> str:
        return svg_of(workflow.published.graph) if workflow.published else "not published"

    # --- publish, roll back, export, import, test ------------------------------------------

    def get_urls(self) -> list:
        own = [
            path("<int:pk>/publish/", self.admin_site.admin_view(self.publish_view), name="workflows_workflow_publish"),
            path(
                "<int:pk>/rollback/<int:version>/",
                self.admin_site.admin_view(self.rollback_view),
                name="workflows_workflow_rollback",
            ),
            path("<int:pk>/export/", self.admin_site.admin_view(self.export_view), name="workflows_workflow_export"),
            path("<int:pk>/test/", self.admin_site.admin_view(self.test_view), name="workflows_workflow_test"),
            path("import/", self.admin_site.admin_view(self.import_view), name="workflows_workflow_import"),
        ]
        return own + super().get_urls()

    def _change_url(self, pk: int) -> str:
        return reverse("admin:workflows_workflow_change", args=[pk])

    def publish_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        workflow = get_object_or_404(Workflow, pk=pk)
        if request.method != "POST":
            return HttpResponseRedirect(self._change_url(pk))
        try:
            version = publish(workflow=workflow, user=request.user.get_username())
        except DefinitionInvalid as exc:
            self.message_user(request, "Not published: " + "; ".join(exc.messages), messages.ERROR)
        else:
            self.message_user(request, f"Published version {version.number}; triggers run it from now on.")
        return HttpResponseRedirect(self._change_url(pk))

    def rollback_view(self, request: HttpRequest, pk: int, version: int) -> HttpResponse:
        workflow = get_object_or_404(Workflow, pk=pk)
        target = get_object_or_404(WorkflowVersion, pk=version, workflow=workflow)
        if request.method != "POST":  # it changes what runs: never on a link or a prefetch
            return HttpResponseRedirect(self._change_url(pk))
        rollback(workflow=workflow, version=target)
        self.message_user(request, f"Triggers run version {target.number} again; the draft is unchanged.")
        return HttpResponseRedirect(self._change_url(pk))

    def export_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        workflow = get_object_or_404(Workflow, pk=pk)
        response = HttpResponse(
            json.dumps(export_workflow(workflow, draft=request.GET.get("draft") == "1"), indent=2),
            content_type="application/json",
        )
        response["Content-Disposition"] = f'attachment; filename="workflow-{workflow.pk}.json"'
        return response

    def import_view(self, request: HttpRequest) -> HttpResponse:
        context = {**self.admin_site.each_context(request), "opts": Workflow._meta, "title": "Import a workflow"}
        if request.method == "POST":
            text = request.POST.get("definition", "")
            upload = request.FILES.get("file")
            if upload is not None:
                text = upload.read().decode("utf-8", errors="replace")
            context["definition"] = text
            try:
                workflow = import_workflow(json.loads(text), user=request.user.get_username())
            except json.JSONDecodeError as exc:
                context["errors"] = [f"Not JSON: {exc}"]
            except DefinitionInvalid as exc:
                context["errors"] = exc.messages
            else:
                self.message_user(request, f"Imported and published {workflow.name!r}.")
                return HttpResponseRedirect(self._change_url(workflow.pk))
        return TemplateResponse(request, "admin/workflows/import.html", context)

    def test_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        workflow = get_object_or_404(Workflow, pk=pk)
        sample = request.POST.get("sample") or json.dumps(SAMPLE_EVENT, indent=2)
        context = {
            **self.admin_site.each_context(request),
            "opts": Workflow._meta,
            "original": workflow,
            "title": f"Test {workflow.name} on a sample event",
            "sample": sample,
            "event_id": request.POST.get("event_id", ""),
        }
        if request.method == "POST":
            event, error = self._sample_event(context["event_id"], sample)
            if error:
                context["error"] = error
            else:
                try:
                    result = test_run(workflow=workflow, event=event)
                except GraphInvalid as exc:
                    context["error"] = "The draft is invalid: " + "; ".join(exc.messages)
                else:
                    context["result"] = result
                    context["result_json"] = json.dumps(_result_view(result), indent=2, ensure_ascii=False)
                    context["would_send"] = [
                        (d.kind, d.node_id, json.dumps(d.request, indent=2, ensure_ascii=False))
                        for d in result.deliveries
                    ]
        return TemplateResponse(request, "admin/workflows/test.html", context)

    @staticmethod
    def _sample_event(event_id: str, sample: str) -> tuple[dict | None, str | None]:
        if event_id.strip():
            event = get_store().get("event", event_id.strip())
            return (event, None) if event else (None, f"There is no stored event {event_id!r}.")
        try:
            event = json.loads(sample)
        except json.JSONDecodeError as exc:
            return None, f"The sample is not JSON: {exc}"
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return None, 'The sample is an event: an object with at least a "type".'
        return {"id": "sample-event", "properties": {}, "context": {}, **event}, None


def _result_view(result: Any) -> dict[str, Any]:
    """What a test run shows: the trace, what it would send, what it would change."""
    return {
        "status": result.status,
        "error": result.error,
        "would_send": [{"node": d.node_id, "kind": d.kind, "request": d.request} for d in result.deliveries],
        "profile_operations": [op.to_dict() for op in result.profile_operations],
        "session_context": result.session_context,
        "session_properties": result.session_properties,
        "scheduled_events": [vars(s) for s in result.scheduled],
        "trace": [vars(t) for t in result.trace],
    }


@admin.register(TriggerRule)
class TriggerRuleAdmin(admin.ModelAdmin):
    list_display = ["__str__", "workflow", "event_type", "source", "priority", "enabled", "once_per"]
    list_filter = ["enabled", "event_type", "workflow", "once_per"]
    search_fields = ["name", "event_type", "workflow__name"]


@admin.register(WorkflowRun)
class WorkflowRunAdmin(admin.ModelAdmin):
    list_display = [
        "started_at",
        "workflow_name",
        "version_number",
        "event_type",
        "profile_id",
        "status",
        "duration",
    ]
    list_filter = ["status", "workflow", ("started_at", admin.DateFieldListFilter)]
    search_fields = ["profile_id", "event_id", "workflow_name", "error"]
    date_hierarchy = "started_at"
    fields = [
        "run_key", "workflow_name", "version_number", "trigger", "event_id", "event_type", "profile_id", "session_id",
        "status", "error", "started_at", "duration", "published", "trace_table",
    ]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="duration (ms)", ordering="duration_ms")
    def duration(self, run: WorkflowRun) -> str:
        return f"{run.duration_ms:.1f}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="trace")
    def trace_table(self, run: WorkflowRun) -> str:
        rows = "".join(
            format_html(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
                step.get("node_id"),
                step.get("action"),
                step.get("status"),
                step.get("port") or "",
                f"{step.get('duration_ms', 0):.2f}",
                step.get("error") or json.dumps(step.get("input"), indent=1, ensure_ascii=False)[:2000],
            )
            for step in run.trace
        )
        head = "<tr><th>node</th><th>action</th><th>status</th><th>port</th><th>ms</th><th>input / error</th></tr>"
        return mark_safe(f"<table id='run-trace'>{head}{rows}</table>")  # every cell is escaped above


from workflows import admin_outbox  # noqa: E402, F401 - registers the outbox's pages (deliveries, destinations)
