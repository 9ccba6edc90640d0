from django.urls import path

from storage.views import ProfileView

urlpatterns = [path("profiles/<str:profile_id>", ProfileView.as_view(), name="api-profile")]
