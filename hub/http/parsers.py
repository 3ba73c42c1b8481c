"""Request body parsing: JSON only for the API (and multipart, for uploads)."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class JSONObjectParser(JSONParser):
    """DRF's JSON parser, made total: a body nested deeper than Python's recursion limit (say
    100,000 `[`) raises RecursionError, which is not a parse error to DRF — a 500 otherwise."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON body nested too deeply") from None
