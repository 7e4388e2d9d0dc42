from django.urls import path, re_path

from . import views

app_name = "batches"

urlpatterns = [
    path("upload/", views.upload, name="upload"),
    path("runs/", views.run_list, name="run_list"),
    path("runs/start/", views.run_start, name="run_start"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
    re_path(r"^runs/(?P<pk>\d+)/results\.(?P<fmt>csv|jsonl)$", views.run_export, name="run_export"),
    path("images/<int:pk>/thumbnail.jpg", views.thumbnail, name="thumbnail"),
]
