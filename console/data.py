"""Console pages: stored profiles, sessions and events (read-only), and deleting a profile
with its sessions and events (GDPR)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from console.browse import ENTITIES, BadFilter, browse_page, filter_fields, flags, list_row, pretty, related
from storage.services import delete_profile
from storage.store import get_store


def _entity(kind: str):
    entity = ENTITIES.get(kind)
    if entity is None:
        raise Http404(f"No stored {kind}")
    return entity


@staff_member_required
def data_list(request: HttpRequest, kind: str) -> HttpResponse:
    entity = _entity(kind)
    status, rows, following = 200, [], None
    try:
        page = browse_page(store=get_store(), entity=entity, query=request.GET)
        rows, following = [list_row(entity, d) for d in page.items], page.next
    except BadFilter as exc:  # the form is shown again, with what to fix
        messages.error(request, str(exc))
        status = 400
    except ValueError:
        messages.warning(request, "That page link is no longer valid; showing the first page.")
        return redirect(f"{request.path}?{_without(request, 'after')}")
    next_query = request.GET.copy()
    if following:
        next_query["after"] = following
    context = {
        **admin.site.each_context(request),
        "title": f"Stored {kind}",
        "kind": kind,
        "entity": entity,
        "kinds": list(ENTITIES),
        "fields": filter_fields(entity, request.GET),
        "rows": rows,
        "next_query": next_query.urlencode() if following else "",
        "first_query": _without(request, "after"),
        "paged": bool(request.GET.get("after")),
    }
    return render(request, "console/data/list.html", context, status=status)


def _without(request: HttpRequest, name: str) -> str:
    query = request.GET.copy()
    query.pop(name, None)
    return query.urlencode()


@staff_member_required
def data_detail(request: HttpRequest, kind: str, id: str) -> HttpResponse:
    entity = _entity(kind)
    store = get_store()
    document = store.get(entity, id)
    if document is None:
        raise Http404(f"No stored {entity} {id}")
    context = {
        **admin.site.each_context(request),
        "title": f"{entity.capitalize()} {id}",
        "kind": kind,
        "entity": entity,
        "id": id,
        "document_json": pretty(document),
        "flags": flags(document) if entity == "event" else [],
        "metadata": document.get("metadata") or {},
        "related": related(entity, document, store=store),
    }
    return render(request, "console/data/detail.html", context)


@staff_member_required
def profile_delete(request: HttpRequest, id: str) -> HttpResponse:
    """GET asks for confirmation; POST deletes the profile, its sessions and its events."""
    store = get_store()
    if request.method == "POST":
        deleted = delete_profile(id, store=store, deleted_by=request.user.get_username())
        messages.success(
            request,
            f"Deleted profile {id}: {deleted.profiles} profile, {deleted.sessions} session(s), "
            f"{deleted.events} event(s). Messages still queued for it will be dropped.",
        )
        return redirect("console:data-list", kind="profiles")
    context = {
        **admin.site.each_context(request),
        "title": f"Delete profile {id}?",
        "id": id,
        "exists": store.get("profile", id) is not None,
        "sessions": store.count("session", profile_id=id),
        "events": store.count("event", profile_id=id),
    }
    return render(request, "console/data/delete.html", context)
