"""Admin pages of the console: queue backlog per partition and the worker processes."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from console.selectors import queue_status
from queueing.broker import get_broker

REFRESH_MILLISECONDS = 2000


@staff_member_required
def queues_dashboard(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Queue backlog",
        "status": queue_status(broker=get_broker()),
        "refresh_ms": REFRESH_MILLISECONDS,
    }
    return render(request, "console/queues.html", context)


@staff_member_required
def queues_status(request: HttpRequest) -> JsonResponse:
    return JsonResponse(queue_status(broker=get_broker()))
