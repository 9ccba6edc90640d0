from django.urls import path

from queueing.views import BacklogView

urlpatterns = [path("<str:namespace>/<str:topic>/backlog", BacklogView.as_view(), name="queue-backlog")]
