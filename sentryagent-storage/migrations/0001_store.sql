-- The AgentStore tables. Every entity is kept whole as JSONB in `doc` (the
-- single source of truth); the other columns are derived from the same value
-- in the same statement, for keys, indexes and queries. Ids sort by bytes
-- (COLLATE "C"), as the core's cursor paging expects. Times are Unix
-- microseconds (bigint), exactly the core's `Timestamp`.

CREATE TABLE tenants (
    id       text COLLATE "C" PRIMARY KEY,
    slug     text COLLATE "C" NOT NULL UNIQUE,
    revision bigint NOT NULL,
    doc      jsonb NOT NULL
);

CREATE TABLE agents (
    id             text COLLATE "C" PRIMARY KEY,
    tenant_id      text COLLATE "C" NOT NULL,
    name           text COLLATE "C" NOT NULL,
    state          text NOT NULL,
    revision       bigint NOT NULL,
    -- public and listed or active: shown by the marketplace
    in_marketplace boolean NOT NULL,
    capabilities   text[] NOT NULL,
    tags           text[] NOT NULL,
    category       text,
    -- the marketplace words (MarketplaceQuery::matches), one lexeme each
    search         tsvector NOT NULL,
    doc            jsonb NOT NULL,
    CONSTRAINT agents_tenant_name UNIQUE (tenant_id, name)
);
CREATE INDEX agents_by_tenant ON agents (tenant_id, id);
CREATE INDEX agents_market ON agents (id) WHERE in_marketplace;
CREATE INDEX agents_market_search ON agents USING gin (search) WHERE in_marketplace;
CREATE INDEX agents_market_capabilities ON agents USING gin (capabilities) WHERE in_marketplace;
CREATE INDEX agents_market_tags ON agents USING gin (tags) WHERE in_marketplace;
CREATE INDEX agents_market_category ON agents (category, id) WHERE in_marketplace;

CREATE TABLE client_secrets (
    -- insertion order: an agent's secrets are listed oldest first
    seq      bigint GENERATED ALWAYS AS IDENTITY,
    id       text COLLATE "C" PRIMARY KEY,
    agent_id text COLLATE "C" NOT NULL,
    revoked  boolean NOT NULL,
    doc      jsonb NOT NULL
);
CREATE INDEX client_secrets_by_agent ON client_secrets (agent_id, seq);

CREATE TABLE admin_keys (
    id        text COLLATE "C" PRIMARY KEY,
    prefix    text COLLATE "C" NOT NULL UNIQUE,
    -- NULL for operator keys
    tenant_id text COLLATE "C",
    doc       jsonb NOT NULL
);
CREATE INDEX admin_keys_by_tenant ON admin_keys (tenant_id, id);

CREATE TABLE signing_keys (
    kid text COLLATE "C" PRIMARY KEY,
    doc jsonb NOT NULL
);

CREATE TABLE settings (
    name  text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE audit_events (
    -- the tenant id, or '' for the system chain
    chain  text COLLATE "C" NOT NULL,
    seq    bigint NOT NULL,
    at     bigint NOT NULL,
    action text NOT NULL,
    actor  text NOT NULL,
    hash   text NOT NULL,
    doc    jsonb NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_events_by_time ON audit_events (chain, at, seq);

CREATE TABLE markers (
    namespace  text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX markers_by_expiry ON markers (expires_at);
