from django.urls import path

from smokesite import views

urlpatterns = [path("", views.page)]
