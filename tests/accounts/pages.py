"""Reading what a rendered page shows."""

import html
import re


def image_sources(page_html: str) -> list[str]:
    """The src of every <img>: /media/… URLs on local storage, presigned URLs on S3."""
    return [html.unescape(src) for src in re.findall(r'<img [^>]*src="([^"]+)"', page_html)]
