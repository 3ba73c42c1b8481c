def login_username(request, credentials) -> str:
    """The name django-axes counts failures under: case-folded, as the login form folds it,
    so "Alice@" and "alice@" share one budget of attempts."""
    username = (credentials or {}).get("username") or request.POST.get("username") or ""
    return username.strip().lower()
