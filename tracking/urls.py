from django.urls import path

from tracking.views import TrackView

urlpatterns = [path("track", TrackView.as_view(), name="track")]
