"""Seed a past: N finished generations with their images, ledger rows and charge allocations.

Written with set-based SQL (INSERT ... SELECT generate_series), so a million generations take
about a minute rather than hours through the ORM. The history belongs to separate accounts
(`history-<k>@example.com`), never to the bench user, and it keeps every invariant that
hub_reconcile checks: each account has one grant sized to what its history consumed plus 8
credits left, so balance = ledger sum = unspent grants; every generation has exactly one charge
of n × price; every fourth-in-five succeeded with its one image, every fifth failed and was
refunded in full (UNIQUE(generation, kind) holds, amounts have the right signs, running
balance_after never goes below zero). Generations go to the accounts in runs of five, so each
account has the same 4:1 mix. Column names are those of the current migrations; if
they change, the INSERTs fail loudly rather than seed something else.
"""

import time

import psycopg

PRICE = 2  # gpt-image-2, 1K, low
LEFT_OVER = 8

STATEMENTS = [
    """CREATE TEMP TABLE seed_account (k int PRIMARY KEY, user_id bigint, account_id bigint, grant_id bigint)""",
    """INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active,
                              date_joined)
       SELECT '!', false, 'history-' || k || '@example.com', '', '', 'history-' || k || '@example.com', false, true,
              now() - interval '400 days'
       FROM generate_series(0, %(accounts)s - 1) k""",
    """INSERT INTO seed_account (k, user_id)
       SELECT split_part(split_part(username, '-', 2), '@', 1)::int, id FROM auth_user
       WHERE username LIKE 'history-%%@example.com'""",
    """INSERT INTO billing_creditaccount (account_type, balance, updated_at, user_id)
       SELECT 'PRO', %(left_over)s, now(), user_id FROM seed_account""",
    """UPDATE seed_account s SET account_id = a.id FROM billing_creditaccount a WHERE a.user_id = s.user_id""",
    """INSERT INTO billing_creditgrant (amount, remaining, expires_at, expired_at, source, reason, created_at,
                                       account_id, granted_by_id)
       SELECT %(price)s * count(*) FILTER (WHERE i %% 5 <> 0) + %(left_over)s, %(left_over)s, NULL, NULL,
              'purchase', 'bench history seed', now() - interval '400 days', a.account_id, NULL
       FROM generate_series(1, %(n)s) i JOIN seed_account a ON a.k = (i / 5) %% %(accounts)s
       GROUP BY a.account_id""",
    """UPDATE seed_account s SET grant_id = g.id FROM billing_creditgrant g WHERE g.account_id = s.account_id""",
    # One generation every 31 s over the past year (for a million), oldest first.
    """INSERT INTO generations_generation (id, prompt, size, quality, n, aspect_ratio, tier, is_async,
           reference_count, status, price_per_image, credits_requested, credits_refunded, error_code,
           error_message, attempts, deadline_at, lease_expires_at, enqueued_at, created_at, started_at,
           finished_at, api_key_id, owner_id, model_id, webhook_url, webhook_events, webhook_base_url, options,
           partial_images)
       SELECT 'gen_hist' || lpad(i::text, 16, '0'), 'history ' || i, '1024x1024', 'low', 1, '1:1', '1K',
              i %% 2 = 0, 0, CASE WHEN i %% 5 = 0 THEN 'failed' ELSE 'succeeded' END, %(price)s, %(price)s,
              CASE WHEN i %% 5 = 0 THEN %(price)s ELSE 0 END,
              CASE WHEN i %% 5 = 0 THEN 'provider_error' ELSE '' END,
              CASE WHEN i %% 5 = 0 THEN 'Image provider request failed' ELSE '' END,
              1, t + interval '800 seconds', NULL, t, t, t, t + interval '20 seconds', NULL, a.user_id,
              'gpt-image-2', '', '[]'::jsonb, '', '{}'::jsonb, NULL
       FROM generate_series(1, %(n)s) i
       JOIN seed_account a ON a.k = (i / 5) %% %(accounts)s
       CROSS JOIN LATERAL (SELECT now() - interval '1 hour' - (%(n)s - i) * interval '31 seconds' AS t) ts""",
    """INSERT INTO generations_generatedimage (id, index, storage_key, content_type, width, height, byte_size,
                                              created_at, generation_id)
       SELECT 'img_hist' || substr(g.id, 9), 0, 'generations/' || a.account_id || '/' || g.id || '/0.png',
              'image/png', 1024, 1024, 65536, g.finished_at, g.id
       FROM generations_generation g JOIN seed_account a ON a.user_id = g.owner_id
       WHERE g.status = 'succeeded'""",
    """INSERT INTO billing_ledgerentry (kind, amount, balance_after, generation_id, memo, created_at, account_id,
                                       actor_id, grant_id)
       SELECT kind, amount,
              sum(amount) OVER (PARTITION BY account_id ORDER BY created_at, ord ROWS UNBOUNDED PRECEDING),
              generation_id, memo, created_at, account_id, NULL, grant_id
       FROM (
           SELECT 'grant' AS kind, g.amount::bigint AS amount, '' AS generation_id, 'bench history seed' AS memo,
                  g.created_at, g.account_id, g.id AS grant_id, 0 AS ord
           FROM billing_creditgrant g JOIN seed_account a ON a.grant_id = g.id
           UNION ALL
           SELECT 'charge', -g.credits_requested, g.id, '1 × gpt-image-2', g.created_at, a.account_id, NULL, 1
           FROM generations_generation g JOIN seed_account a ON a.user_id = g.owner_id
           UNION ALL
           SELECT 'refund', g.credits_refunded, g.id, 'refund: 1 of 1 images not delivered', g.finished_at,
                  a.account_id, NULL, 2
           FROM generations_generation g JOIN seed_account a ON a.user_id = g.owner_id
           WHERE g.status = 'failed'
       ) movements
       ORDER BY created_at, ord""",
    """INSERT INTO billing_chargeallocation (amount, grant_id, entry_id)
       SELECT -l.amount, a.grant_id, l.id
       FROM billing_ledgerentry l JOIN seed_account a ON a.account_id = l.account_id
       WHERE l.kind = 'charge'""",
]

SEEDED_TABLES = [
    "auth_user",
    "billing_creditaccount",
    "billing_creditgrant",
    "generations_generation",
    "generations_generatedimage",
    "billing_ledgerentry",
    "billing_chargeallocation",
]


def seed_history(db_url: str, generations: int, accounts: int = 10) -> dict:
    """Seed and VACUUM ANALYZE; returns the time taken and the row counts of the seeded tables."""
    params = {"n": generations, "accounts": accounts, "price": PRICE, "left_over": LEFT_OVER}
    started = time.monotonic()
    with psycopg.connect(db_url, autocommit=True) as conn:
        with conn.transaction():
            for statement in STATEMENTS:
                conn.execute(statement, params)
        seeded = time.monotonic() - started
        for table in SEEDED_TABLES:
            conn.execute(f"VACUUM ANALYZE {table}")
        rows = {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in SEEDED_TABLES}
    return {"insert_s": seeded, "vacuum_analyze_s": time.monotonic() - started - seeded, "rows": rows}
