-- Counts of marketplace agents per directory key of the kinds
-- GET /v1/marketplace/categories lists (category, capability, skill_name),
-- kept with `agent_market_keys` by its trigger function, so that those
-- counts read a few rows per key instead of one row per agent and key (a
-- GROUP BY over the whole marketplace on every call). Keys of other kinds
-- (most of them one agent's own: agent, name, locator) are not counted
-- here; their counts are still grouped from `agent_market_keys`.
--
-- A key's count is split over up to 16 rows (`shard`: the writing
-- backend's process id modulo 16), summed by readers: registrations that
-- share a key (every agent of a category, of a version) on different
-- connections update different rows instead of all waiting, until commit,
-- on one row's lock. Each statement of the trigger changes the counts of
-- the keys it added or removed in key order; a transaction that removes
-- some keys and adds others may still meet another one in a deadlock,
-- which Postgres breaks by failing one of them, and the store retries it
-- (SQLSTATE 40P01). Rows whose count falls to zero stay; readers skip
-- keys whose sum is zero.
CREATE TABLE market_key_counts (
    key   text COLLATE "C" NOT NULL,
    shard smallint NOT NULL,
    n     bigint NOT NULL,
    PRIMARY KEY (key, shard)
);

-- Whether `key` is of a counted kind.
CREATE FUNCTION market_key_counted(key text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT split_part(key, ':', 1) IN ('category', 'capability', 'skill_name') $$;

INSERT INTO market_key_counts (key, shard, n)
SELECT key, 0, count(*) FROM agent_market_keys WHERE market_key_counted(key) GROUP BY key;

CREATE OR REPLACE FUNCTION agent_market_keys_sync() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        WITH gone AS (
            DELETE FROM agent_market_keys WHERE agent_id = OLD.id RETURNING key
        )
        INSERT INTO market_key_counts AS c (key, shard, n)
        SELECT key, pg_backend_pid() % 16, -1 FROM gone WHERE market_key_counted(key) ORDER BY key
        ON CONFLICT (key, shard) DO UPDATE SET n = c.n + excluded.n;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        WITH gone AS (
            DELETE FROM agent_market_keys
            WHERE agent_id = OLD.id
              AND NOT (key = ANY (coalesce(NEW.market_keys, '{}'::text[])))
            RETURNING key
        )
        INSERT INTO market_key_counts AS c (key, shard, n)
        SELECT key, pg_backend_pid() % 16, -1 FROM gone WHERE market_key_counted(key) ORDER BY key
        ON CONFLICT (key, shard) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    WITH added AS (
        INSERT INTO agent_market_keys (key, agent_id)
        SELECT DISTINCT k, NEW.id FROM unnest(coalesce(NEW.market_keys, '{}'::text[])) AS k
        ON CONFLICT DO NOTHING
        RETURNING key
    )
    INSERT INTO market_key_counts AS c (key, shard, n)
    SELECT key, pg_backend_pid() % 16, 1 FROM added WHERE market_key_counted(key) ORDER BY key
    ON CONFLICT (key, shard) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END
$$;
