from django import forms
from django.conf import settings


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A file field that takes several files (Django's documented pattern)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/jpeg,image/png,image/webp"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, (list, tuple)) else [data]
        files = [f for f in files if f]
        if not files:
            raise forms.ValidationError("Choose at least one photo.")
        if len(files) > settings.MAX_UPLOAD_FILES:
            raise forms.ValidationError(f"At most {settings.MAX_UPLOAD_FILES} photos at a time.")
        return files


class UploadForm(forms.Form):
    photos = MultipleFileField(label="Photos", help_text="JPEG, PNG or WebP")
