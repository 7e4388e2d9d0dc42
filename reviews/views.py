"""The Quality page and GET /api/quality/: how precise the automatic decisions are on the
warehouse's own photos, how often reviewers agree, and each reviewer's figures."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required, permission_required
from django.shortcuts import render
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .models import ReviewItem
from .quality import quality_report


@login_required
@permission_required("reviews.view_quality", raise_exception=True)
def quality_page(request):
    report = quality_report()
    classes = sorted(set(report["per_class"]) | set(report["reviewer_agreement"]))
    rows = [(name, report["per_class"].get(name), report["reviewer_agreement"].get(name)) for name in classes]
    waiting = [(ReviewItem.Status(status).label, n) for status, n in report["waiting"].items()]
    return render(request, "reviews/quality.html", {"report": report, "rows": rows, "waiting": waiting})


class CanViewQuality(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.has_perm("reviews.view_quality"))


class EstimateSerializer(serializers.Serializer):
    audited = serializers.IntegerField(help_text="settled audits (unusable photos left out)")
    agreed = serializers.IntegerField(help_text="audits whose class the reviewer confirmed")
    precision = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True, help_text="95% Wilson interval")
    high = serializers.FloatField(allow_null=True)
    failing = serializers.BooleanField(help_text="the whole interval lies below the target")


class QualitySerializer(serializers.Serializer):
    target = serializers.FloatField(help_text="AUTO_ACCEPT_PRECISION")
    overall = EstimateSerializer()
    per_class = serializers.DictField(child=EstimateSerializer())
    reviewer_agreement = serializers.DictField(child=serializers.DictField())
    reviewers = serializers.ListField(child=serializers.DictField())
    waiting = serializers.DictField(child=serializers.IntegerField())


class QualityView(APIView):
    """The live precision of automatic decisions (from audits), reviewers' agreement and figures."""

    permission_classes = [permissions.IsAuthenticated, CanViewQuality]

    @extend_schema(responses={200: QualitySerializer})
    def get(self, request):
        return Response(quality_report())
