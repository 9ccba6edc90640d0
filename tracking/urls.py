from django.urls import path

from tracking.views import TrackView, WebhookView, tracker_script

urlpatterns = [
    path("track", TrackView.as_view(), name="track"),
    path("collect/<str:event_type>/<str:source_id>", WebhookView.as_view(), name="collect"),
    path("tracker.js", tracker_script, name="tracker-js"),
]
