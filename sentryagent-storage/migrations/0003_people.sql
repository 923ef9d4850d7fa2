-- People: accounts, memberships, sessions and invitations. As in 0001, each
-- record is kept whole as JSONB in `doc`; the other columns are derived
-- from it in the same statement. Secrets are never stored: sessions and
-- invitations are found by the keyed hash of their secret.

CREATE TABLE users (
    id       text COLLATE "C" PRIMARY KEY,
    -- normalized by the core; unique
    email    text COLLATE "C" NOT NULL UNIQUE,
    revision bigint NOT NULL,
    doc      jsonb NOT NULL
);

CREATE TABLE memberships (
    tenant_id text COLLATE "C" NOT NULL,
    user_id   text COLLATE "C" NOT NULL,
    role      text NOT NULL,
    doc       jsonb NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id, tenant_id);

CREATE TABLE sessions (
    id         text COLLATE "C" PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE,
    user_id    text COLLATE "C" NOT NULL,
    tenant_id  text COLLATE "C",
    -- Unix microseconds: the end of the lifetime, and the first end (idle
    -- or lifetime), which purges look at
    expires_at bigint NOT NULL,
    ends_at    bigint NOT NULL,
    doc        jsonb NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id, id);
CREATE INDEX sessions_by_end ON sessions (ends_at);

CREATE TABLE invitations (
    id         text COLLATE "C" PRIMARY KEY,
    tenant_id  text COLLATE "C" NOT NULL,
    token_hash bytea NOT NULL UNIQUE,
    doc        jsonb NOT NULL
);
CREATE INDEX invitations_by_tenant ON invitations (tenant_id, id);
