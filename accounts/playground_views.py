"""The playground page (/account/playground/): the form, its cost, and the generation it made,
which the page's script watches (accounts/static/accounts/playground.js)."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse

from accounts.forms import PlaygroundForm
from accounts.playground import playground_models, playground_submit
from accounts.views import owned
from billing.selectors import account_type_limits, credits_summary
from billing.services import account_settle
from generations.selectors import generation_get_for_owner, generation_queue_positions
from hub.http.errors import HubError
from hub.http.public_url import base_url


@login_required
@owned
def playground(request):
    """Write a prompt, see what it costs, generate: the POST charges and queues the generation
    (accounts.playground) and redirects here with its id, where the page's script
    (accounts/static/accounts/playground.js) watches it through the events stream; a refusal
    is shown on the form with the API's status (400, 402, 429), nothing charged."""
    account = account_settle(user=request.user)
    models = playground_models(limits=account_type_limits(account_type=account.account_type))
    watched = None
    if request.method == "POST":
        form = PlaygroundForm(request.POST, models=models)
        if form.is_valid():
            asked = form.cleaned_data
            try:
                generation = playground_submit(
                    user=request.user,
                    account_type=account.account_type,
                    model_id=asked["model"],
                    prompt=asked["prompt"],
                    size=asked["size"],
                    quality=asked["quality"],
                    n=asked["n"],
                    root=base_url(request),
                )
            except HubError as error:
                form.add_error(error.param if error.param in form.fields else None, error.message)
                return _playground_page(request, form, models, account, status=error.status)
            return redirect(f"{reverse('accounts:playground')}?generation={generation.id}")
        return _playground_page(request, form, models, account, status=400)
    if request.GET.get("generation"):
        watched = generation_get_for_owner(owner=request.user, generation_id=request.GET["generation"])
        watched.queue_position = generation_queue_positions([watched]).get(watched.id)
        initial = {name: getattr(watched, name) for name in ("prompt", "size", "quality", "n")}
        form = PlaygroundForm(initial={**initial, "model": watched.model_id}, models=models)
    else:
        first = models[0] if models else None
        initial = {"model": first.id, "size": first.sizes[0], "quality": first.qualities[0]} if first else {}
        form = PlaygroundForm(initial=initial, models=models)
    return _playground_page(request, form, models, account, watched=watched)


def _playground_page(request, form, models, account, *, watched=None, status=200):
    asked = {name: form[name].value() for name in ("model", "size", "quality", "n")}
    model = next((m for m in models if m.id == asked["model"]), None)
    price = model.price(asked["size"], asked["quality"]) if model else None
    try:
        cost = price * int(asked["n"]) if price is not None else None
    except (TypeError, ValueError):
        cost = None
    context = {
        "form": form,
        "catalog": {m.id: m.as_json() for m in models},
        "cost": cost,
        "summary": credits_summary(account=account),
        "watched": watched,
    }
    if watched is not None:
        context["slots"] = range(watched.n)
        context["events_url"] = reverse("v1:generation-events", args=[watched.id])
    return render(request, "accounts/playground.html", context, status=status)
