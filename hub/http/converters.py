"""URL path converters: identifiers in paths are short ASCII tokens, so a NUL byte, a control
character or a surrogate in a path is a 404 at routing — never a database error."""


class IdentifierConverter:
    regex = r"[A-Za-z0-9_.:-]{1,100}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
