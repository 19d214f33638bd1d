from django.urls import include, path

# No staticfiles_urlpatterns(): `manage.py server` serves STATIC_URL from the apps' static/
# directories itself while DEBUG is on (and from STATIC_ROOT in production), without a view.
urlpatterns = [path("", include("guestbook.urls"))]
