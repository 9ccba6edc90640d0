"""Content-Security-Policy on the pages a browser renders: the admin and the console.

The policy allows scripts and styles from this site only, no inline ones: markup that
got into a page (an event property shown in the admin, say) cannot run as script. The
JSON APIs (/track, /queue) are not rendered by browsers and go without it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html"):
            response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response


def with_policy(policy: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Sends `policy` instead of the site's (the middleware keeps a view's own header).

    Used only by the API documentation pages: Redoc's bundle injects <style> elements at run
    time (styled-components) and both bundles use data: images, which the site's policy
    refuses. Scripts stay limited to this site's files."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapped(*args: object, **kwargs: object) -> HttpResponse:
            response = view(*args, **kwargs)
            response.headers["Content-Security-Policy"] = policy
            return response

        return wrapped

    return decorate
