-- The marketplace directory: the index keys of sentryagent_core's
-- marketplace_index (`kind:value`) for MarketplaceQuery's directory filters
-- (agent, name, version, skill_id, skill_name, locator, domain, author,
-- verified, annotation).
--
-- `agents.market_keys`: the agent's keys, computed by the store in the
-- statement that writes the agent (empty outside the marketplace), with a
-- GIN index for exact keys. `tenants.market_keys`: the publisher's keys,
-- the same way. Rows written before this migration hold NULL until the
-- store back-fills them when it connects (the keys come from the OASF
-- taxonomy shipped with the code, which SQL does not have).
ALTER TABLE agents ADD COLUMN market_keys text[];
CREATE INDEX agents_market_keys ON agents USING gin (market_keys) WHERE in_marketplace;
ALTER TABLE tenants ADD COLUMN market_keys text[];
CREATE INDEX tenants_market_keys ON tenants USING gin (market_keys);

-- One row per (key, agent): prefix filters are ranges of its primary key,
-- and the counts of GET /v1/marketplace/categories are index-only scans.
-- A trigger keeps it equal to `agents.market_keys` in the statement that
-- writes the agent.
CREATE TABLE agent_market_keys (
    key      text COLLATE "C" NOT NULL,
    agent_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (key, agent_id)
);
CREATE INDEX agent_market_keys_by_agent ON agent_market_keys (agent_id);

-- The function keeps the schema it was created in, so that statements of
-- any connection (whatever its search_path) keep the table right.
CREATE FUNCTION agent_market_keys_sync() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM agent_market_keys WHERE agent_id = OLD.id;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM agent_market_keys
        WHERE agent_id = OLD.id
          AND NOT (key = ANY (coalesce(NEW.market_keys, '{}'::text[])));
    END IF;
    INSERT INTO agent_market_keys (key, agent_id)
    SELECT DISTINCT k, NEW.id FROM unnest(coalesce(NEW.market_keys, '{}'::text[])) AS k
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER agents_market_keys_sync
    AFTER INSERT OR UPDATE OF market_keys OR DELETE ON agents
    FOR EACH ROW EXECUTE FUNCTION agent_market_keys_sync();
