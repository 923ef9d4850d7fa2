-- The TrustPolicyStore table: tenants' trust policies (token exchange). The
-- policy is kept whole as JSONB in `doc`; the other columns are derived from
-- it in the same statement. Ids sort by bytes (COLLATE "C").

CREATE TABLE trust_policies (
    id        text COLLATE "C" PRIMARY KEY,
    tenant_id text COLLATE "C" NOT NULL,
    revision  bigint NOT NULL,
    doc       jsonb NOT NULL
);
CREATE INDEX trust_policies_by_tenant ON trust_policies (tenant_id, id);
