from django.contrib import admin

from queueing.models import WorkerHeartbeat, WorkerSettings, WorkerType


@admin.register(WorkerSettings)
class WorkerSettingsAdmin(admin.ModelAdmin):
    list_display = [
        "worker_type", "enabled", "replicas", "logging_level",
        "min_batch_size", "max_batch_size", "max_time_in_buffer", "updated_at",
    ]  # fmt: skip
    list_editable = ["enabled", "replicas", "logging_level"]
    fieldsets = [
        (None, {"fields": ["worker_type", "enabled", "replicas", "logging_level"]}),
        ("Bulker", {"fields": ["min_batch_size", "max_batch_size", "max_time_in_buffer"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        return ["worker_type"] if obj else []

    def has_add_permission(self, request):
        # One row per worker type; the migration creates them.
        existing = set(WorkerSettings.objects.values_list("worker_type", flat=True))
        return super().has_add_permission(request) and existing != set(WorkerType.values)


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["worker_type", "host", "pid", "started_at", "last_seen", "processed", "stopped"]
    list_filter = ["worker_type", "stopped"]
    readonly_fields = list_display

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
