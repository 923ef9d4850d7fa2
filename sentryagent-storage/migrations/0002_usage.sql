-- The UsageMeter tables. Counts are added with
-- INSERT ... ON CONFLICT DO UPDATE SET count = count + EXCLUDED.count, in the
-- transaction that records the batch's idempotency key.

-- Day (`d:YYYY-MM-DD`) and month (`m:YYYY-MM`) buckets of a tenant.
CREATE TABLE usage_counts (
    tenant_id text COLLATE "C" NOT NULL,
    kind      text NOT NULL,
    bucket    text COLLATE "C" NOT NULL,
    count     bigint NOT NULL,
    PRIMARY KEY (tenant_id, kind, bucket)
);

-- Hour buckets of a tenant; `hour` is the hour's start in Unix microseconds.
CREATE TABLE usage_hours (
    tenant_id text COLLATE "C" NOT NULL,
    kind      text NOT NULL,
    hour      bigint NOT NULL,
    count     bigint NOT NULL,
    PRIMARY KEY (tenant_id, kind, hour)
);

-- Per-agent counts of a month (`YYYY-MM`).
CREATE TABLE usage_agent_months (
    tenant_id text COLLATE "C" NOT NULL,
    kind      text NOT NULL,
    month     text COLLATE "C" NOT NULL,
    agent_id  text COLLATE "C" NOT NULL,
    count     bigint NOT NULL,
    PRIMARY KEY (tenant_id, kind, month, agent_id)
);

-- The agents with any use in a month.
CREATE TABLE usage_active_agents (
    tenant_id text COLLATE "C" NOT NULL,
    month     text COLLATE "C" NOT NULL,
    agent_id  text COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, month, agent_id)
);

-- Idempotency keys of applied batches.
CREATE TABLE usage_batches (
    idempotency_key text COLLATE "C" PRIMARY KEY,
    applied_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_batches_by_time ON usage_batches (applied_at);
