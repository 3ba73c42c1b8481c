"""The copy-paste commands of the quick-start panel, for this hub's base URL."""

import json

from generations.catalog import enabled_models


def quickstart_commands(*, api_base: str) -> dict:
    model = enabled_models().first()
    body = {
        "model": model.id if model else "gpt-image-2",
        "prompt": "A lighthouse at dawn, watercolor",
        "size": "1024x1024",
        "quality": "low",
    }
    auth = '-H "Authorization: Bearer $GIH_API_KEY"'
    return {
        "base": api_base,
        "export": 'export GIH_API_KEY="gih_live_…"',
        "credits": f"curl {api_base}/credits {auth}",
        "models": f"curl {api_base}/models",
        "generate": (
            f"curl {api_base}/images/generations \\\n  {auth} \\\n"
            f"  -H \"Content-Type: application/json\" \\\n  -d '{json.dumps(body)}'"
        ),
    }
