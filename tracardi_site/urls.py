"""Root URLs: the tracking API, the queue API, the console and the admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("tracking.urls")),
    path("queue/", include("queueing.urls")),
    path("api/", include("storage.urls")),
    path("admin/console/", include("console.urls")),
    path("admin/", admin.site.urls),
]

# Unknown paths: JSON outside the admin.
handler404 = "tracking.views.not_found"
