"""SQLite schema of the local store, applied (idempotently) when a store is opened."""

from __future__ import annotations

SCHEMA_VERSION = 6
# 2: reprovision target columns; 3: batch monitoring indexes; 4: allocation targets live in
# deviceData.regionId/orgId (the documented built-in master data), group default timezone;
# 5: the group setting allow_retired_bootstrap (an enosprov rule of the local store)
# 6: sync with an EnOS tenant: sync_groups (groups imported from a profile), sync_links

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS masterdata_groups (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    attributes  TEXT NOT NULL,            -- JSON list of attribute definitions
    create_time INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS registration_groups (
    group_id            TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    description         TEXT NOT NULL DEFAULT '',
    group_secret        TEXT NOT NULL,
    product_key         TEXT NOT NULL,
    masterdata_group_id TEXT NOT NULL REFERENCES masterdata_groups(id),
    region_id           TEXT,
    org_id              TEXT,
    reprovision_method  TEXT NOT NULL,
    model_type          TEXT NOT NULL,
    manufacturer_org_id TEXT,
    sign_scheme         TEXT NOT NULL,
    sn_pattern          TEXT,
    mqtt_url            TEXT,
    http_url            TEXT,
    create_time         INTEGER NOT NULL,
    update_time         INTEGER NOT NULL,
    timezone            TEXT,              -- default timezone of its devices (bootstrap needs one)
    -- [ENOSPROV] 1: a retired (replaced) deviceSn may register itself again by bootstrap
    allow_retired_bootstrap INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS devices (
    sn                  TEXT PRIMARY KEY,  -- system SN
    group_id            TEXT NOT NULL REFERENCES registration_groups(group_id),
    device_sn           TEXT NOT NULL,     -- manufacturer serial, unique per group
    product_key         TEXT,
    region_id           TEXT,
    org_id              TEXT,
    batch_order         INTEGER,
    batch_tag           TEXT,              -- StringI18n defaultValue (indexed)
    batch_tag_i18n      TEXT,              -- StringI18n i18nValue as JSON, or NULL
    device_data         TEXT NOT NULL,     -- master data JSON (sorted keys), without deviceSn
    description         TEXT,
    current_status      TEXT NOT NULL,
    connected_time      INTEGER,
    allocated_time      INTEGER,
    finished_time       INTEGER,
    discarded_time      INTEGER,
    allocate_status     TEXT NOT NULL,
    connect_status      TEXT NOT NULL,
    reprovisioning      INTEGER NOT NULL DEFAULT 0,
    allocate_error_msg  TEXT NOT NULL DEFAULT '',
    device_key          TEXT,
    device_secret       TEXT,
    create_by           TEXT,
    create_time         INTEGER NOT NULL,
    update_by           TEXT,
    update_time         INTEGER NOT NULL,
    manufacturer_org_id TEXT,
    reprovision_time    INTEGER,           -- last reprovision (allocation reset) time
    UNIQUE (group_id, device_sn)
);
-- Batch monitoring (enosprov batches): counts per (group, batch tag) from indexes alone. The
-- partial index holds only devices that changed since registration (BATCH_STATE_WHERE), so
-- registering a batch does not grow it.
CREATE INDEX IF NOT EXISTS devices_batch_time ON devices (group_id, batch_tag, create_time);
CREATE INDEX IF NOT EXISTS devices_batch_state ON devices (group_id, batch_tag, allocate_status,
    connect_status, reprovisioning, allocate_error_msg, allocated_time, update_time)
    WHERE update_time > create_time OR allocate_status <> 'init' OR connect_status <> 'init';
CREATE INDEX IF NOT EXISTS devices_created ON devices (create_time);

CREATE TABLE IF NOT EXISTS replacements (
    old_sn        TEXT NOT NULL,
    old_device_sn TEXT NOT NULL,
    new_sn        TEXT NOT NULL,
    new_device_sn TEXT NOT NULL,
    group_id      TEXT NOT NULL,
    time          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS replacements_old ON replacements (old_sn);
CREATE INDEX IF NOT EXISTS replacements_new ON replacements (new_sn);
CREATE INDEX IF NOT EXISTS replacements_old_device ON replacements (group_id, old_device_sn);

-- Sync with an EnOS tenant (core/sync.py, docs/sync.md): the groups imported from a profile,
-- and for each device pushed, its EnOS system sn next to the store's.
CREATE TABLE IF NOT EXISTS sync_groups (
    group_id      TEXT PRIMARY KEY REFERENCES registration_groups(group_id),
    profile       TEXT NOT NULL,
    imported_time INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_links (
    group_id    TEXT NOT NULL,
    device_sn   TEXT NOT NULL,
    local_sn    TEXT NOT NULL,
    enos_sn     TEXT NOT NULL,
    pushed_time INTEGER NOT NULL,
    PRIMARY KEY (group_id, device_sn)
);
CREATE INDEX IF NOT EXISTS sync_links_enos ON sync_links (enos_sn);
CREATE INDEX IF NOT EXISTS sync_links_local ON sync_links (local_sn);
"""

BUILTIN_MASTERDATA_GROUP = "builtin"

# The predicate of devices_batch_state, repeated verbatim by the queries that use the index.
BATCH_STATE_WHERE = (
    "(update_time > create_time OR allocate_status <> 'init' OR connect_status <> 'init')"
)

DEVICE_COLUMNS = (
    "sn, group_id, device_sn, product_key, region_id, org_id, batch_order, batch_tag, "
    "batch_tag_i18n, device_data, description, current_status, connected_time, allocated_time, "
    "finished_time, discarded_time, allocate_status, connect_status, reprovisioning, "
    "allocate_error_msg, device_key, device_secret, create_by, create_time, update_by, "
    "update_time, manufacturer_org_id, reprovision_time"
)

# Columns added after schema 1, with their definitions: an older store gets them on open.
ADDED_DEVICE_COLUMNS = {"reprovision_time": "INTEGER"}
ADDED_GROUP_COLUMNS = {
    "timezone": "TEXT",
    "allow_retired_bootstrap": "INTEGER NOT NULL DEFAULT 0",
}
# Schema 2-3 kept a reprovision target in these columns; schema 4 folds it into deviceData.
LEGACY_TARGET_COLUMNS = ("target_region_id", "target_org_id")

INSERT_DEVICE = (
    "INSERT INTO devices (sn, group_id, device_sn, product_key, batch_order, batch_tag, "
    "batch_tag_i18n, device_data, description, current_status, allocate_status, connect_status, "
    "create_by, create_time, update_by, update_time, manufacturer_org_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'init', 'init', 'init', ?, ?, ?, ?, ?)"
)

# -- the same store on PostgreSQL (backends/pg_store.py) -----------------------------------------
# The same tables, columns and indexes; times are BIGINT (milliseconds); identifiers that are
# sorted compare byte by byte (COLLATE "C", as SQLite does); ``rowid`` is the insertion order
# SQLite gives every row for free. Statements end with ';' at a line end (pg_sql.statements).
PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS masterdata_groups (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    attributes  TEXT NOT NULL,
    create_time BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS registration_groups (
    group_id            TEXT COLLATE "C" PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    description         TEXT NOT NULL DEFAULT '',
    group_secret        TEXT NOT NULL,
    product_key         TEXT NOT NULL,
    masterdata_group_id TEXT NOT NULL REFERENCES masterdata_groups(id),
    region_id           TEXT,
    org_id              TEXT,
    reprovision_method  TEXT NOT NULL,
    model_type          TEXT NOT NULL,
    manufacturer_org_id TEXT,
    sign_scheme         TEXT NOT NULL,
    sn_pattern          TEXT,
    mqtt_url            TEXT,
    http_url            TEXT,
    create_time         BIGINT NOT NULL,
    update_time         BIGINT NOT NULL,
    timezone            TEXT,
    allow_retired_bootstrap INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS devices (
    rowid               BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    sn                  TEXT COLLATE "C" PRIMARY KEY,
    group_id            TEXT COLLATE "C" NOT NULL REFERENCES registration_groups(group_id),
    device_sn           TEXT COLLATE "C" NOT NULL,
    product_key         TEXT,
    region_id           TEXT,
    org_id              TEXT,
    batch_order         BIGINT,
    batch_tag           TEXT COLLATE "C",
    batch_tag_i18n      TEXT,
    device_data         TEXT NOT NULL,
    description         TEXT,
    current_status      TEXT NOT NULL,
    connected_time      BIGINT,
    allocated_time      BIGINT,
    finished_time       BIGINT,
    discarded_time      BIGINT,
    allocate_status     TEXT NOT NULL,
    connect_status      TEXT NOT NULL,
    reprovisioning      INTEGER NOT NULL DEFAULT 0,
    allocate_error_msg  TEXT NOT NULL DEFAULT '',
    device_key          TEXT,
    device_secret       TEXT,
    create_by           TEXT,
    create_time         BIGINT NOT NULL,
    update_by           TEXT,
    update_time         BIGINT NOT NULL,
    manufacturer_org_id TEXT,
    reprovision_time    BIGINT,
    UNIQUE (group_id, device_sn)
);
CREATE INDEX IF NOT EXISTS devices_batch_time ON devices (group_id, batch_tag, create_time);
CREATE INDEX IF NOT EXISTS devices_batch_state ON devices (group_id, batch_tag, allocate_status,
    connect_status, reprovisioning, allocate_error_msg, allocated_time, update_time)
    WHERE update_time > create_time OR allocate_status <> 'init' OR connect_status <> 'init';
CREATE INDEX IF NOT EXISTS devices_created ON devices (create_time);
CREATE TABLE IF NOT EXISTS replacements (
    rowid         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    old_sn        TEXT COLLATE "C" NOT NULL,
    old_device_sn TEXT COLLATE "C" NOT NULL,
    new_sn        TEXT COLLATE "C" NOT NULL,
    new_device_sn TEXT COLLATE "C" NOT NULL,
    group_id      TEXT COLLATE "C" NOT NULL,
    time          BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS replacements_old ON replacements (old_sn);
CREATE INDEX IF NOT EXISTS replacements_new ON replacements (new_sn);
CREATE INDEX IF NOT EXISTS replacements_old_device ON replacements (group_id, old_device_sn);
CREATE TABLE IF NOT EXISTS sync_groups (
    group_id      TEXT COLLATE "C" PRIMARY KEY REFERENCES registration_groups(group_id),
    profile       TEXT NOT NULL,
    imported_time BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_links (
    group_id    TEXT COLLATE "C" NOT NULL,
    device_sn   TEXT COLLATE "C" NOT NULL,
    local_sn    TEXT COLLATE "C" NOT NULL,
    enos_sn     TEXT COLLATE "C" NOT NULL,
    pushed_time BIGINT NOT NULL,
    PRIMARY KEY (group_id, device_sn)
);
CREATE INDEX IF NOT EXISTS sync_links_enos ON sync_links (enos_sn);
CREATE INDEX IF NOT EXISTS sync_links_local ON sync_links (local_sn);
"""

# The columns of INSERT_DEVICE in order, for PostgreSQL's COPY (the three statuses 'init').
COPY_DEVICES = (
    "COPY devices (sn, group_id, device_sn, product_key, batch_order, batch_tag, batch_tag_i18n, "
    "device_data, description, create_by, create_time, update_by, update_time, "
    "manufacturer_org_id, current_status, allocate_status, connect_status) FROM STDIN"
)
