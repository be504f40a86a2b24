-- Each update's JSON exactly as Telegram sent it (the webhook's body, or its element of
-- getUpdates' `result`), beside the jsonb copy used for queries. NULL for updates stored before.
ALTER TABLE telegram_updates ADD COLUMN raw text;

-- A chat the bot can no longer post to: kicked from it, or the group was upgraded to a
-- supergroup with a new id. While a stop is active, posts to that chat are held (they stay
-- pending, none fails on its own); a migration is followed at once and its row stays as the
-- record of where the chat went.
CREATE TABLE telegram_chat_stops (
    chat_id            bigint      PRIMARY KEY,
    reason             text        NOT NULL CHECK (reason IN ('kicked', 'migrated')),
    -- Telegram's own words for it.
    description        text        NOT NULL,
    -- The supergroup a migrated group became.
    migrate_to_chat_id bigint,
    stopped_at         timestamptz NOT NULL DEFAULT now(),
    -- When sending resumed: the bot was added back, or the posts moved to migrate_to_chat_id.
    resumed_at         timestamptz,
    CHECK ((reason = 'migrated') = (migrate_to_chat_id IS NOT NULL))
);
