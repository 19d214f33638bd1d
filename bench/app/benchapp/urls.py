from django.urls import path

from benchapp import views

urlpatterns = [
    path("plain", views.plain),
    path("template", views.template),
    path("sleep", views.sleep),
    path("1mb", views.one_mb),
    path("stream", views.stream),
    path("upload", views.upload),
    path("fanout-asgiref", views.fanout_asgiref),
    path("fanout-ferrule", views.fanout_ferrule),
    path("costs", views.costs),
]
