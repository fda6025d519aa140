from __future__ import annotations

from django.urls import path

from django_site import views

urlpatterns = [path("", views.index)]
