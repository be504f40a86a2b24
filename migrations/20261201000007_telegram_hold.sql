-- Until when Telegram asked the chat's senders to wait (429 retry_after). A sender whose slot
-- falls inside the pause takes a new slot after it instead of sending into it.
ALTER TABLE telegram_rate ADD COLUMN held_until timestamptz;
