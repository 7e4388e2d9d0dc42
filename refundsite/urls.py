from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from rest_framework.routers import SimpleRouter

from batches import api as batches_api
from batches.metrics import metrics_view
from batches.predict import PredictView
from classifier import views as classifier_views

from . import views

admin.site.site_header = "Refund item classifier"
admin.site.site_title = "Refund item classifier"
admin.site.index_title = "Review queue, photos, runs and models"

router = SimpleRouter()  # no API root or format suffixes: /api/schema/ describes every endpoint
router.register("runs", batches_api.BatchRunViewSet, basename="run")

urlpatterns = [
    path("predict", PredictView.as_view(), name="predict"),
    path("health", classifier_views.HealthView.as_view(), name="health"),
    path("metrics", metrics_view, name="metrics"),
    path("api/", include(router.urls)),
    path("api/images/", batches_api.ImageUploadView.as_view(), name="api-images"),
    path("api/schema/", views.SchemaView.as_view(), name="api-schema"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("reviews.urls")),  # the review desk lives inside the admin: before it
    path("admin/", admin.site.urls),
    path("", views.home, name="home"),
    path("", include("batches.urls")),
]

handler400 = views.bad_request
handler403 = views.permission_denied
handler404 = views.page_not_found
handler500 = views.server_error
