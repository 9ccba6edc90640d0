"""Admin for the outbox: deliveries (inspect, replay dead ones) and destinations (resume)."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.template.defaultfilters import pluralize
from django.urls import path, reverse
from django.utils.html import format_html

from workflows.models import Delivery, DeliveryStatus, Destination
from workflows.outbox import replay, replay_all_dead, resume_destination

MASK = "********"


def masked(request: Any) -> Any:
    """The request with credential-looking header values hidden (TRACK_DROP_HEADERS patterns):
    whoever may read deliveries need not read the tokens in them."""
    if not isinstance(request, dict) or not isinstance(request.get("headers"), dict):
        return request
    headers = {
        name: MASK if any(fnmatch.fnmatch(name.lower(), p) for p in settings.TRACK_DROP_HEADERS) else value
        for name, value in request["headers"].items()
    }
    return {**request, "headers": headers}


def pretty_json(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str))


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id", "kind", "target", "destination", "status", "attempts", "created_at",
        "next_attempt_at", "last_status_code", "short_error", "delivered_at",
    ]  # fmt: skip
    list_filter = ["status", "kind", "destination"]
    search_fields = ["key", "request__url", "last_error", "run_id", "workflow_name"]
    date_hierarchy = "created_at"
    actions = ["replay_selected"]
    change_list_template = "admin/workflows/delivery/change_list.html"
    readonly_fields = [
        "kind", "key", "status", "destination", "run_id", "workflow_name", "node_id", "attempts",
        "next_attempt_at", "retry_until", "last_status_code", "last_error", "created_at", "updated_at",
        "delivered_at", "payload",
    ]  # fmt: skip
    fields = readonly_fields

    @admin.display(description="error")
    def short_error(self, obj: Delivery) -> str:
        return obj.last_error[:120]

    @admin.display(description="request")
    def payload(self, obj: Delivery) -> str:
        return pretty_json(masked(obj.request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # recorded by workflows only

    def has_change_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        return False  # read-only detail; the actions change state

    def has_replay_permission(self, request: HttpRequest) -> bool:
        # The rows are read-only in the admin; replaying is a change of their state.
        return request.user.has_perm("workflows.change_delivery")

    @admin.action(description="Replay selected dead deliveries", permissions=["replay"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        dead = queryset.filter(status=DeliveryStatus.FAILED)
        skipped = queryset.count() - dead.count()
        count = replay(dead)
        self.message_user(
            request,
            f"Replayed {count} dead deliver{pluralize(count, 'y,ies')}."
            + (f" {skipped} not dead, left alone." if skipped else ""),
            messages.SUCCESS,
        )

    def get_urls(self) -> list:
        urls = [
            path(
                "replay-all-dead/",
                self.admin_site.admin_view(self.replay_all_dead_view),
                name="workflows_delivery_replay_all_dead",
            )
        ]
        return urls + super().get_urls()

    def replay_all_dead_view(self, request: HttpRequest) -> HttpResponseRedirect:
        changelist = reverse("admin:workflows_delivery_changelist")
        if request.method != "POST":
            self.message_user(request, "Replay all dead deliveries needs a POST (the button).", messages.ERROR)
            return HttpResponseRedirect(changelist)
        if not self.has_replay_permission(request):
            self.message_user(request, "Not allowed.", messages.ERROR)
            return HttpResponseRedirect(changelist)
        count = replay_all_dead()
        self.message_user(request, f"Replayed all {count} dead deliver{pluralize(count, 'y,ies')}.", messages.SUCCESS)
        return HttpResponseRedirect(changelist)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        dead = Delivery.objects.filter(status=DeliveryStatus.FAILED).count()
        return super().changelist_view(request, {**(extra_context or {}), "dead_count": dead})


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin):
    list_display = [
        "name", "enabled", "trigger", "event_type", "url", "paused", "consecutive_failures", "paused_at",
        "short_reason",
    ]  # fmt: skip
    list_filter = ["enabled", "paused", "trigger"]
    search_fields = ["name", "url", "event_type", "paused_reason"]
    actions = ["resume"]
    readonly_fields = ["consecutive_failures", "paused", "paused_reason", "paused_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "url", "method", "headers"]}),
        ("Trigger", {"fields": ["trigger", "event_type", "source", "profile_fields", "condition", "template"]}),
        ("State", {"fields": readonly_fields}),
    ]

    @admin.display(description="paused reason")
    def short_reason(self, obj: Destination) -> str:
        return obj.paused_reason[:120]

    @admin.action(description="Resume selected (queue their paused deliveries again)", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Destination]) -> None:
        total = sum(resume_destination(destination) for destination in queryset)
        self.message_user(
            request, f"Resumed {queryset.count()} destinations; {total} paused deliveries queued.", messages.SUCCESS
        )
