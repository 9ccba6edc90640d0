from django.urls import path

from console.logs import views

# Included by console/urls.py under logs/, in its "console" namespace.
urlpatterns = [
    path("", views.logs_page, name="logs"),
    path("lines.json", views.logs_lines, name="logs-lines"),
]
