"""Request parsers for the API."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class JSONParserWithDepthLimit(JSONParser):
    """DRF's JSON parser, with a body nested deeper than Python's recursion limit answered as a
    400 (Python's json raises RecursionError, which is not a ValueError, for those)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
