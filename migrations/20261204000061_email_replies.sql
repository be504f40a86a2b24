-- Replies by email while operators are away: a user signed in with an email, whose
-- conversation went to a person outside duty hours, may ask for operators' replies to reach
-- their mailbox too.
--
-- The address is the conversation's (it goes with it on erasure and retention, and is part of
-- its export, as every column of `conversations` is); `emailed_at` marks an operator reply
-- already sent, so that a job run twice sends it once.

-- Where operators' replies are also sent, and since when; NULL: the user did not ask.
ALTER TABLE conversations ADD COLUMN email_reply_to text;
ALTER TABLE conversations ADD COLUMN email_reply_since timestamptz;
ALTER TABLE conversations ADD CONSTRAINT conversations_email_reply_check
    CHECK ((email_reply_to IS NULL) = (email_reply_since IS NULL));

-- When an operator's reply went out by email.
ALTER TABLE messages ADD COLUMN emailed_at timestamptz;
