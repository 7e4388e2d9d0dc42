"""Template filters for showing photo file names."""

import re

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe

register = template.Library()

_SEPARATOR = re.compile(r"([_\-.\s])")


@register.filter
def breakable(name: str) -> str:
    """The name, escaped, with a line-break opportunity after each `_`, `-`, `.` and space: a long
    file name wraps between its parts instead of in the middle of one."""
    parts = _SEPARATOR.split(str(name))
    return mark_safe(
        "".join(conditional_escape(part) + ("<wbr>" if _SEPARATOR.fullmatch(part) else "") for part in parts)
    )
