from django.urls import include, path

from console import views

app_name = "console"
urlpatterns = [
    path("queues/", views.queues_dashboard, name="queues"),
    path("queues/status.json", views.queues_status, name="queues-status"),
    path("logs/", include("console.logs.urls")),
]
