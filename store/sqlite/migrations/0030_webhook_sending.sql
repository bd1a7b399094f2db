-- A redelivery under way holds its webhook until sending_until (micros),
-- so that two at once do not both send it; NULL when none is.
ALTER TABLE undelivered_webhooks ADD COLUMN sending_until INTEGER;
