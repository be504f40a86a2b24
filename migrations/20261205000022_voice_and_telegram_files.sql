-- Voice transcription and attachments in Telegram topics.
--
-- A voice attachment's transcription either succeeds (`transcript`) or is given up
-- (`transcript_failed_at`: the server refused it, or every attempt failed); a user message
-- with a voice attachment in neither state waits for its transcript before it is decided.
ALTER TABLE attachments ADD COLUMN transcript_failed_at timestamptz;

-- A post of a user's attachment to the conversation's topic (sendPhoto, sendDocument,
-- sendVoice), its caption in `text`. Removed with the attachment.
ALTER TABLE telegram_outbox ADD COLUMN attachment_id uuid REFERENCES attachments (id) ON DELETE CASCADE;

