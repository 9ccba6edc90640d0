from django.urls import include, path

from console import data, deadletters, views

app_name = "console"
urlpatterns = [
    path("queues/", views.queues_dashboard, name="queues"),
    path("queues/status.json", views.queues_status, name="queues-status"),
    path("dead-letters/", deadletters.dead_letters_index, name="dead-letters-index"),
    path("dead-letters/<str:topic>/", deadletters.dead_letters, name="dead-letters"),
    path("dead-letters/<str:topic>/action/", deadletters.dead_letters_action, name="dead-letters-action"),
    path("data/profiles/<str:id>/delete/", data.profile_delete, name="profile-delete"),
    path("data/<str:kind>/", data.data_list, name="data-list"),
    path("data/<str:kind>/<str:id>/", data.data_detail, name="data-detail"),
    path("workers/<str:worker_type>/settings/", views.fleet_settings, name="fleet-settings"),
    path("helm/", views.helm_values, name="helm"),
    path("logs/", include("console.logs.urls")),
]
