"""The log page (/admin/console/logs/) and the JSON its script polls for new lines."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from console.logs.forms import LogFilterForm, TailForm
from console.logs.selectors import LogFilters, dropped_count, tail

POLL_MILLISECONDS = 1500


def _filters(form: LogFilterForm) -> LogFilters:
    data = form.cleaned_data
    return LogFilters(
        worker_type=data.get("worker_type") or "",
        pid=data.get("pid"),
        min_level=form.level_number(),
        text=data.get("q") or "",
        since=data.get("since"),
        until=data.get("until"),
    )


@staff_member_required
def logs_page(request: HttpRequest) -> HttpResponse:
    form = LogFilterForm(request.GET)
    valid = form.is_valid()
    context = {
        **admin.site.each_context(request),
        "title": "Worker logs",
        "form": form,
        "valid": valid,
        "dropped": dropped_count(_filters(form)) if valid else 0,
        "poll_ms": POLL_MILLISECONDS,
    }
    return render(request, "console/logs.html", context, status=200 if valid else 400)


@staff_member_required
def logs_lines(request: HttpRequest) -> JsonResponse:
    form = TailForm(request.GET)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors}, status=400)
    filters = _filters(form)
    lines = tail(filters, after=form.cleaned_data.get("after"))
    return JsonResponse({"lines": lines, "dropped": dropped_count(filters)})
