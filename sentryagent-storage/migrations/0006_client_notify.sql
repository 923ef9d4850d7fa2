-- Change notices for the client-record caches of the nodes (PostgresStore's
-- client cache): every change to an agent, a client secret or a tenant
-- sends a notification on the channel `sentryagent_clients`, delivered to
-- every listening node when the transaction commits. The payload is
-- `<schema>:agent:<agent id>` or `<schema>:tenant:<tenant id>` (several
-- deployments may share a database, one schema each). Inserting an agent
-- or a tenant sends nothing: a record that did not exist was not cached.

CREATE FUNCTION sentryagent_notify_agent() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('sentryagent_clients', TG_TABLE_SCHEMA || ':agent:' || OLD.id);
    ELSE
        PERFORM pg_notify('sentryagent_clients', TG_TABLE_SCHEMA || ':agent:' || NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION sentryagent_notify_secret() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('sentryagent_clients', TG_TABLE_SCHEMA || ':agent:' || OLD.agent_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('sentryagent_clients', TG_TABLE_SCHEMA || ':agent:' || NEW.agent_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION sentryagent_notify_tenant() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('sentryagent_clients', TG_TABLE_SCHEMA || ':tenant:' || OLD.id);
    ELSE
        PERFORM pg_notify('sentryagent_clients', TG_TABLE_SCHEMA || ':tenant:' || NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER agents_notify_clients AFTER UPDATE OR DELETE ON agents
    FOR EACH ROW EXECUTE FUNCTION sentryagent_notify_agent();
CREATE TRIGGER client_secrets_notify_clients AFTER INSERT OR UPDATE OR DELETE ON client_secrets
    FOR EACH ROW EXECUTE FUNCTION sentryagent_notify_secret();
CREATE TRIGGER tenants_notify_clients AFTER UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION sentryagent_notify_tenant();
