"""The review desk (inside the admin: /admin/reviews/desk/) and the quality figures."""

from django.contrib import admin
from django.urls import path

from . import desk, desk_api, views

app_name = "reviews"

DESK = "admin/reviews/desk/"

urlpatterns = [
    path(DESK, admin.site.admin_view(desk.desk_page), name="desk"),
    path(DESK + "grid/", admin.site.admin_view(desk.grid_page), name="desk-grid"),
    path(DESK + "items/<int:pk>/photo.jpg", admin.site.admin_view(desk.photo, cacheable=True), name="desk-photo"),
    path(DESK + "api/next/", desk_api.NextItemsView.as_view(), name="desk-next"),
    path(DESK + "api/items/<int:pk>/decide/", desk_api.DecideView.as_view(), name="desk-decide"),
    path(DESK + "api/items/<int:pk>/skip/", desk_api.SkipView.as_view(), name="desk-skip"),
    path(DESK + "api/items/<int:pk>/open/", desk_api.OpenView.as_view(), name="desk-open"),
    path(DESK + "api/renew/", desk_api.RenewView.as_view(), name="desk-renew"),
    path(DESK + "api/release/", desk_api.ReleaseView.as_view(), name="desk-release"),
    path(DESK + "api/grid/confirm/", desk_api.GridConfirmView.as_view(), name="desk-grid-confirm"),
    path("quality/", views.quality_page, name="quality"),
    path("api/quality/", views.QualityView.as_view(), name="api-quality"),
]
