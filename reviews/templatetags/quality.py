from django import template

register = template.Library()


@register.filter
def percent(value) -> str:
    """0.9912 -> "99.1%"; nothing for a missing figure."""
    if value is None or value == "":
        return "–"
    return f"{100 * float(value):.1f}%"
