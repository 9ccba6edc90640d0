"""Root URLs: the tracking API, the queue API, the console, the admin, health, metrics and
the API schema with its documentation pages."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from console.operations import HealthView, ReadyView
from tracardi_site.middleware import with_policy
from tracardi_site.observability import metrics_view

docs_policy = with_policy(settings.API_DOCS_CONTENT_SECURITY_POLICY)

urlpatterns = [
    path("", include("tracking.urls")),
    path("healthz", HealthView.as_view(), name="healthz"),
    path("readyz", ReadyView.as_view(), name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("queue/", include("queueing.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", docs_policy(SpectacularSwaggerSplitView.as_view(url_name="api-schema")), name="api-docs"),
    path("api/redoc/", docs_policy(SpectacularRedocView.as_view(url_name="api-schema")), name="api-redoc"),
    path("api/", include("storage.urls")),
    path("admin/console/", include("console.urls")),
    path("admin/", admin.site.urls),
]

# Unknown paths: JSON outside the admin.
handler404 = "tracking.views.not_found"
