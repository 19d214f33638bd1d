from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

urlpatterns = [path("", include("guestbook.urls"))]
# Serves the apps' static/ directories while DEBUG is on.
urlpatterns += staticfiles_urlpatterns()
