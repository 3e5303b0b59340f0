-- Stored positions become contract 1 JSON in one place only, the processor's
-- `history::write_position` (used by the API's history and the rebuild of live state);
-- the SQL twin of 0002 is dropped so the two cannot drift apart.
DROP FUNCTION position_json(positions, text, text);
