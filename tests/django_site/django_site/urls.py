from django.urls import path

from django_site import views

urlpatterns = [
    path("notes/", views.notes),
    path("session/", views.session),
    path("upload/", views.upload),
    path("stream/", views.stream),
    path("stream-error/", views.stream_error),
    path("file/", views.file),
    path("redirect/", views.redirect_to_notes),
    path("boom/", views.boom),
    path("uri/", views.uri),
    path("db/", views.db),
    path("whoami/", views.whoami, name="whoami"),
    path("to-whoami/", views.to_whoami),
    path("async-where/", views.async_where),
    path("wait-where/", views.wait_where),
    path("thread/", views.thread),
    path("async-sleep/", views.async_sleep),
    path("async-events/", views.async_events),
    path("async-notes/", views.async_notes),
    path("async-ticks/", views.async_ticks),
]
