import html
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import CreditGrant, GrantSource
from billing.services import account_get_or_create, credits_grant
from tests.accounts.pages import image_sources
from tests.conftest import fetch
from tests.factories import create_generation, make_generation, make_user

pytestmark = pytest.mark.django_db
PNG = b"\x89PNG"


def test_the_credits_page_shows_balance_type_grants_and_next_expiration(member):
    user, client = member
    account = account_get_or_create(user=user)
    soon = timezone.now() + timedelta(days=10)
    credits_grant(account=account, amount=300, expires_at=soon, reason="Launch bonus")
    credits_grant(account=account, amount=50, source=GrantSource.PURCHASE)
    content = client.get("/account/credits/").content.decode()
    assert 'data-testid="balance">350<' in content
    assert "FREE" in content
    assert f"300 credits on {soon:%Y-%m-%d}" in content
    assert "Launch bonus" in content and f"{soon:%Y-%m-%d %H:%M}" in content
    assert "+300" in content and "+50" in content


def test_the_credits_page_expires_due_grants_as_the_api_does(member, api):
    user, client = member
    account = account_get_or_create(user=user)
    grant = credits_grant(account=account, amount=40, expires_at=timezone.now() + timedelta(days=1))
    CreditGrant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    content = client.get("/account/credits/").content.decode()
    assert 'data-testid="balance">0<' in content
    assert 'badge-expire">Expire' in content and "-40" in content
    assert 'badge-expired">expired' in content


def _ledger_rows(content: str) -> int:
    return content.split('id="ledger"')[1].split("</table>")[0].count("<tr>") - 1  # less the header


def test_the_ledger_lists_charges_and_refunds_newest_first_in_pages(member):
    user, client = member
    credits_grant(account=account_get_or_create(user=user), amount=100)
    generations = [make_generation(user, n=2, delivered=1) for _ in range(13)]  # 1 grant, 13 charges, 13 refunds
    first = client.get("/account/credits/").content.decode()
    assert "Page 1 of 2" in first and _ledger_rows(first) == 25
    assert first.index(generations[-1].id) < first.index(generations[-2].id)
    assert 'badge-charge">Charge' in first and 'badge-refund">Refund' in first
    second = client.get("/account/credits/?page=2").content.decode()
    assert "Page 2 of 2" in second and _ledger_rows(second) == 2
    assert generations[0].id in second and "+100" in second
    for page in ["abc", "-1", str(2**63), str(10**30)]:  # not a page: the first or the last one, no error
        for listing in ("credits", "generations"):
            assert client.get(f"/account/{listing}/?page={page}").status_code == 200


def test_the_generations_page_lists_status_model_credits_and_thumbnails(member):
    user, client = member
    credits_grant(account=account_get_or_create(user=user), amount=100)
    done = make_generation(user, n=2, prompt="Red fox in snow")
    failed = make_generation(user, n=1, delivered=0, prompt="Broken one")
    content = client.get("/account/generations/").content.decode()
    assert content.index(failed.id) < content.index(done.id)
    assert 'badge-succeeded">succeeded' in content and 'badge-failed">failed' in content
    assert "gpt-image-2" in content and "Red fox in snow" in content
    (thumbnail,) = image_sources(content)  # the failed generation has none
    assert done.images.get(index=0).storage_key in thumbnail
    assert fetch(client, thumbnail).startswith(PNG)
    assert "2 refunded" in content


def test_the_generation_page_shows_every_image_and_they_load(member):
    user, client = member
    credits_grant(account=account_get_or_create(user=user), amount=100)
    generation = make_generation(user, n=3, delivered=2)
    content = client.get(f"/account/generations/{generation.id}/").content.decode()
    assert "2 of 3" in content and "4 used of 6 charged, 2 refunded" in content
    sources = image_sources(content)
    assert [image.storage_key in src for image, src in zip(generation.images.all(), sources, strict=True)] == [
        True,
        True,
    ]
    assert all(fetch(client, src).startswith(PNG) for src in sources)


def test_the_generation_page_shows_its_history(member):
    user, client = member
    credits_grant(account=account_get_or_create(user=user), amount=100)
    generation = make_generation(user, n=3, delivered=2)
    content = client.get(f"/account/generations/{generation.id}/").content.decode()
    history = content[content.index('id="generation-history"') :]
    history = history[: history.index("</table>")]
    rows = [re.sub(r"<[^>]+>|\s+", " ", row).split() for row in re.findall(r"<tr>(.*?)</tr>", history, re.S)[1:]]
    assert [row[3:] for row in rows] == [
        ["queued", "—", "6", "credits"],
        ["claimed", "1"],
        ["succeeded", "1", "2", "images"],
        ["refunded", "1", "2", "credits"],
    ]


def test_the_overview_has_the_quick_start_with_this_hubs_base_url(member):
    _, client = member
    content = html.unescape(client.get("/account/").content.decode())
    assert "http://testserver/api/v1" in content
    assert 'curl http://testserver/api/v1/credits -H "Authorization: Bearer $GIH_API_KEY"' in content
    assert "curl http://testserver/api/v1/images/generations" in content and "gpt-image-2" in content


def test_an_unfinished_generation_can_be_canceled_from_its_page(member):
    user, client = member
    credits_grant(account=account_get_or_create(user=user), amount=10)
    queued = create_generation(user, n=2)  # 4 credits charged
    page = client.get(f"/account/generations/{queued.id}/").content.decode()
    assert 'data-testid="cancel"' in page
    answer = client.post(f"/account/generations/{queued.id}/cancel/", follow=True)
    content = answer.content.decode()
    assert "badge-canceled" in content and 'data-testid="cancel"' not in content
    assert account_get_or_create(user=user).balance == 10
    assert client.get(f"/account/generations/{queued.id}/cancel/").status_code == 405  # POST only


def test_another_users_generation_cannot_be_canceled(member):
    _, client = member
    owner = make_user(credits=10)
    queued = create_generation(owner)
    assert client.post(f"/account/generations/{queued.id}/cancel/").status_code == 404
    assert account_get_or_create(user=owner).balance == 8
