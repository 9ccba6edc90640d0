from django.urls import path

from console import views

app_name = "console"
urlpatterns = [
    path("queues/", views.queues_dashboard, name="queues"),
    path("queues/status.json", views.queues_status, name="queues-status"),
]
