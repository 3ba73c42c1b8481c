"""Built-in provider: renders real images with Pillow, derived from the prompt, in the format
asked (PNG, JPEG or WebP at the compression asked), on a transparent background when asked.

Test directives in the prompt exercise failure paths from outside:
`[fail]` provider error · `[partial:K]` only K images · `[sleep:S]` takes S seconds ·
`[malformed]` returns bytes that are not an image.

A streamed generation's partial images (ProviderRequest.partial_images) are its images scaled
down and blurred back up, coarse to fine, handed on at even fractions of the call's time — its
`[sleep]`, else PARTIAL_SECONDS a partial, so that a person sees them come (`make run`). A
`[fail]` call fails after them, as a provider's stream that breaks.
"""

import base64
import hashlib
import io
import re
import textwrap
import time

from PIL import Image, ImageDraw, ImageFont

from workers.providers.base import Generated, PartialImage, ProviderError, ProviderRequest

AUTO_SIZE = (1024, 1024)
PARTIAL_SECONDS = 0.4
_DIRECTIVE = re.compile(r"\[(fail|malformed|partial:(\d+)|sleep:(\d+(?:\.\d+)?))\]")


class LocalProvider:
    def generate(self, request: ProviderRequest) -> Generated:
        directives = {m.group(1).split(":")[0]: m for m in _DIRECTIVE.finditer(request.prompt)}
        partials = request.partial_images if request.on_partial is not None and "malformed" not in directives else 0
        seconds = float(directives["sleep"].group(3)) if "sleep" in directives else PARTIAL_SECONDS * partials
        left = request.deadline - time.monotonic()
        if seconds and seconds >= left:
            time.sleep(max(left, 0))
            raise ProviderError(
                "The image provider timed out", permanent=False, detail="[sleep] past deadline", kind="timeout"
            )
        started = time.monotonic()
        images = [] if "fail" in directives and not partials else self._images(request, directives)
        for step in range(partials):
            time.sleep(max(started + seconds * (step + 1) / (partials + 1) - time.monotonic(), 0))
            for index, image in enumerate(images):
                b64 = base64.b64encode(coarse(image, step, partials, request.options)).decode()
                request.on_partial(PartialImage(index, step, b64))
        time.sleep(max(started + seconds - time.monotonic(), 0))
        if "fail" in directives:
            raise ProviderError(
                "The image provider failed to generate the image", permanent=False, detail="[fail] directive"
            )
        return Generated(images)

    @staticmethod
    def _images(request: ProviderRequest, directives: dict) -> list[bytes]:
        count = request.n
        if "partial" in directives:
            count = min(count, int(directives["partial"].group(2)))
        if "malformed" in directives:
            return [b"this is not an image"] * count
        size = AUTO_SIZE if request.size == "auto" else tuple(int(v) for v in request.size.split("x"))
        return [render(request.prompt, size, index, request.references, request.options) for index in range(count)]


def coarse(data: bytes, step: int, steps: int, options: dict) -> bytes:
    """A partial image of `data`: scaled down (by 2^(steps − step + 2): with 3 partials 1/32,
    1/16, 1/8) and blurred back up, in the format asked."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        factor = 2 ** (steps - step + 2)
        small = image.resize((max(1, image.width // factor), max(1, image.height // factor)), Image.Resampling.BOX)
        return _encoded(small.resize(image.size, Image.Resampling.BILINEAR), options)


def render(
    prompt: str, size: tuple[int, int], index: int, references: list[bytes], options: dict | None = None
) -> bytes:
    """A gradient in colours hashed from the prompt, with the prompt written on it; with a
    transparent background, the gradient is an ellipse on nothing."""
    options = options or {}
    digest = hashlib.sha256(f"{prompt}\0{index}".encode()).digest()
    top, bottom = digest[0:3], digest[3:6]
    width, height = size
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(Image.new("RGB", size, tuple(bottom)), Image.new("RGB", size, tuple(top)), gradient)
    if references:
        with Image.open(io.BytesIO(references[0])) as ref:
            thumb = ref.convert("RGB")
            thumb.thumbnail((width // 3, height // 3))
            image.paste(thumb, (width - thumb.width - 16, height - thumb.height - 16))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(14, width // 32))
    text = "\n".join(textwrap.wrap(prompt, width=max(16, width // max(14, width // 32) * 2)))
    draw.multiline_text((24, 24), text[:600], fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    if options.get("background") == "transparent":
        alpha = Image.new("L", size, 0)
        ImageDraw.Draw(alpha).ellipse((0, 0, width - 1, height - 1), fill=255)
        image.putalpha(alpha)
    return _encoded(image, options)


def _encoded(image: Image.Image, options: dict) -> bytes:
    fmt = options.get("output_format", "png")
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, format="PNG", compress_level=1)
    else:  # jpeg, webp: output_compression is the encoder's quality, 100 by default as OpenAI's
        image.save(out, format=fmt.upper(), quality=options.get("output_compression", 100))
    return out.getvalue()
