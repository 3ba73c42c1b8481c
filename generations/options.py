"""OpenAI's image options beyond size and quality (background, output format and compression,
moderation, end-user ids, and on edits the mask and input fidelity): the values the API knows,
and which of them a model offers — catalog data, its row's `options`.

A model's `options` maps an option's name to the values it accepts (a list), or to `true` for
any value the API knows (`output_compression` 0–100, an id, the mask). An option the row does
not name is refused for that model (400, `param` naming it), before anything is charged: a
drop-in does what it is asked or says that it cannot.
"""

from hub.http.errors import InvalidRequest

# name → the values the API accepts; None: a value of the option's own type (checked by the
# request's contract, generations.schema).
OPTIONS: dict[str, tuple[str, ...] | None] = {
    "background": ("auto", "opaque", "transparent"),
    "output_format": ("png", "jpeg", "webp"),
    "output_compression": None,  # 0–100, for jpeg and webp
    "moderation": ("auto", "low"),
    "user": None,
    "safety_identifier": None,
    "input_fidelity": ("high", "low"),
    "mask": None,  # a PNG upload; stored with the generation as `true`
}
# Options about the images a request sends: they need one (edits, reference_image).
IMAGE_OPTIONS = ("input_fidelity", "mask")
# And one OpenAI's edits do not take: a request with images is refused it.
NO_IMAGE_OPTIONS = ("moderation",)
# Every option with every value: the seeded gpt-image-2's catalog row.
ALL_OPTIONS = {name: list(values) if values else True for name, values in OPTIONS.items()}


def options_check(model, options: dict) -> None:
    """Refuse an option `model` does not offer, or a value it does not accept (InvalidRequest
    naming the option)."""
    offered = model.options or {}
    for name, value in options.items():
        allowed = offered.get(name)
        if not allowed:
            raise InvalidRequest(f"{name} is not supported by {model.id}", param=name)
        if isinstance(allowed, list) and value not in allowed:
            raise InvalidRequest(
                f"{name} '{value}' is not supported by {model.id}; supported: {', '.join(allowed)}", param=name
            )


def catalog_options_errors(options) -> list[str]:
    """What is wrong with a catalog row's `options` (the admin's form): unknown names, values
    the API does not know."""
    if not isinstance(options, dict):
        return ['An object such as {"background": ["auto", "transparent"], "user": true}.']
    errors = []
    for name, allowed in options.items():
        if name not in OPTIONS:
            errors.append(f"Unknown option '{name}'; known: {', '.join(OPTIONS)}.")
        elif allowed is True or allowed is False:
            continue
        elif OPTIONS[name] is None or not isinstance(allowed, list):
            errors.append(f"{name}: true, false{' or a list of its values' if OPTIONS[name] else ''}.")
        elif not allowed or not all(isinstance(v, str) and v in OPTIONS[name] for v in allowed):
            errors.append(f"{name}: a list of some of {', '.join(OPTIONS[name])}.")
    return errors
