from django.contrib import admin

from .models import AliasChange


@admin.register(AliasChange)
class AliasChangeAdmin(admin.ModelAdmin):
    list_display = ["created_at", "alias", "from_version", "to_version", "action", "actor"]
    list_filter = ["alias", "action"]
    readonly_fields = [f.name for f in AliasChange._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
