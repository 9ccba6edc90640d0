"""Console pages: the dead letters of each topic; replay and purge (selected or all)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.browse import DEAD_LETTER_TOPICS, dead_letter_page, page_number
from queueing.broker import BrokerUnavailable, get_broker
from queueing.topics import Topic


def _topic(name: str) -> Topic:
    topic = DEAD_LETTER_TOPICS.get(name)
    if topic is None:
        raise Http404(f"No topic {name}")
    return topic


@staff_member_required
def dead_letters_index(request: HttpRequest) -> HttpResponse:
    return redirect("console:dead-letters", topic="functions")


@staff_member_required
def dead_letters(request: HttpRequest, topic: str) -> HttpResponse:
    found = _topic(topic)
    search = request.GET.get("q", "").strip()
    page = page_number(request.GET.get("page"))
    try:
        rows, has_next = dead_letter_page(broker=get_broker(), topic=found, search=search, page=page)
        unavailable = ""
    except BrokerUnavailable as exc:
        rows, has_next, unavailable = [], False, str(exc)
    context = {
        **admin.site.each_context(request),
        "title": f"Dead letters of system/{found.name}",
        "topic": found,
        "topics": list(DEAD_LETTER_TOPICS),
        "rows": rows,
        "search": search,
        "page": page,
        "has_next": has_next,
        "unavailable": unavailable,
    }
    return render(request, "console/dead_letters.html", context)


@staff_member_required
@require_POST
def dead_letters_action(request: HttpRequest, topic: str) -> HttpResponseRedirect:
    found = _topic(topic)
    action = request.POST.get("action", "")
    ids = None if action.endswith("-all") else request.POST.getlist("ids")
    back = reverse("console:dead-letters", kwargs={"topic": found.name})
    if action not in ("replay", "replay-all", "purge", "purge-all"):
        messages.error(request, f"Unknown action {action!r}.")
        return redirect(back)
    if ids == []:
        messages.warning(request, "Select dead letters first.")
        return redirect(back)
    broker = get_broker()
    try:
        if action.startswith("replay"):
            done = broker.replay_dead_letters(found, ids)
            messages.success(request, f"Replayed {done} dead letter(s) to system/{found.name}.")
        else:
            done = broker.purge_dead_letters(found, ids)
            messages.success(request, f"Purged {done} dead letter(s).")
    except BrokerUnavailable as exc:
        messages.error(request, f"The broker did not answer; nothing may have changed: {exc}")
    return redirect(back)
