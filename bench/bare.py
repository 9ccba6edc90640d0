"""The baseline of the API benchmark: a bare Django view that parses the same JSON body and
answers 201, served by the same gunicorn, workers and middleware as /track.

    gunicorn bench.bare:application   (the project's URLs plus POST /bare)
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracardi_site.settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()  # sets Django up: the project's URLs can be included below

import orjson  # noqa: E402
from django.conf import settings  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import include, path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


@csrf_exempt
def bare(request: HttpRequest) -> HttpResponse:
    orjson.loads(request.body)
    return HttpResponse(b'{"ok":true}', status=201, content_type="application/json")


urlpatterns = [path("bare", bare), path("", include("tracardi_site.urls"))]
settings.ROOT_URLCONF = __name__
