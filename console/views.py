"""Admin pages of the console: the backlog and fleet dashboard, its status JSON, the worker
settings form it posts, and the Helm values of the current worker settings."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from console.forms import FleetSettingsForm
from console.selectors import queue_status
from console.services import update_fleet_settings
from queueing.broker import get_broker
from queueing.helm import current_helm_yaml
from queueing.models import WorkerType
from queueing.sampling import sample_if_due
from queueing.worker import get_worker_settings

REFRESH_MILLISECONDS = 2000


@staff_member_required
def queues_dashboard(request: HttpRequest) -> HttpResponse:
    broker = get_broker()
    sample_if_due(broker=broker)
    context = {
        **admin.site.each_context(request),
        "title": "Queue backlog and workers",
        "status": queue_status(broker=broker),
        "forms": [(t, FleetSettingsForm(instance=get_worker_settings(t), prefix=t)) for t in WorkerType.values],
        "refresh_ms": REFRESH_MILLISECONDS,
    }
    return render(request, "console/queues.html", context)


@staff_member_required
def queues_status(request: HttpRequest) -> JsonResponse:
    broker = get_broker()
    # Deployments without run_workers get their samples from here (see queueing/sampling.py).
    sample_if_due(broker=broker)
    return JsonResponse(queue_status(broker=broker))


@staff_member_required
@require_POST
def fleet_settings(request: HttpRequest, worker_type: str) -> HttpResponse:
    if worker_type not in WorkerType.values:
        raise Http404("No such worker type.")
    form = update_fleet_settings(worker_type=worker_type, data=request.POST, user=request.user)
    if form.errors:
        errors = "; ".join(f"{field}: {' '.join(e)}" for field, e in form.errors.items())
        messages.error(request, f"worker.{worker_type} not changed: {errors}")
    elif form.changed_data:
        messages.success(request, f"worker.{worker_type}: changed {', '.join(form.changed_data)}.")
    return redirect("console:queues")


@staff_member_required
def helm_values(request: HttpRequest) -> HttpResponse:
    context = {**admin.site.each_context(request), "title": "Helm values", "yaml": current_helm_yaml()}
    return render(request, "console/helm.html", context)
