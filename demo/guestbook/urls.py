from django.urls import path

from guestbook import views

urlpatterns = [
    path("", views.home, name="home"),
    path("upload/", views.upload, name="upload"),
    path("stream/", views.stream, name="stream"),
]
