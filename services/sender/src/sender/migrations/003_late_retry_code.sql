-- R-S7: a number is marked invalid only when the 24 h retry of a 131026 failed with 131026 again, so the
-- send log remembers which error code the one 24 h retry was taken for.
ALTER TABLE messages ADD COLUMN late_retry_code integer;
-- Rows whose 24 h retry is already scheduled: until it is claimed, error_code is still the code that
-- scheduled it (the best there is for rows written before this column).
UPDATE messages SET late_retry_code = error_code WHERE late_retry_attempt IS NOT NULL;
