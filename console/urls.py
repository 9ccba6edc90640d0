from django.urls import path

from console import views

app_name = "console"
urlpatterns = [
    path("queues/", views.queues_dashboard, name="queues"),
    path("queues/status.json", views.queues_status, name="queues-status"),
    path("workers/<str:worker_type>/settings/", views.fleet_settings, name="fleet-settings"),
    path("helm/", views.helm_values, name="helm"),
]
