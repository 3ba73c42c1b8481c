"""Public ids and API keys are random over [A-Za-z0-9], every character equally likely."""

import string
from collections import Counter

from hub.infra.ids import opaque_id, random_token


def test_tokens_have_the_length_and_alphabet_asked_for_and_do_not_repeat():
    tokens = {random_token(43) for _ in range(2000)}
    assert len(tokens) == 2000
    assert all(len(token) == 43 and set(token) <= set(string.ascii_letters + string.digits) for token in tokens)
    assert opaque_id("gen").startswith("gen_") and len(opaque_id("gen")) == 28


def test_every_character_is_equally_likely():
    """62,000 characters: each of the 62 ~1,000 times (σ ≈ 31). Taking `byte % 62` of every byte
    would give the first 8 characters 5/256 each against 4/256: ~1,200."""
    counts = Counter("".join(random_token(62) for _ in range(1000)))
    assert len(counts) == 62
    assert all(850 < count < 1150 for count in counts.values()), sorted(counts.values())
