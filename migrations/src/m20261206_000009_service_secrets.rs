//! `service_secrets`: secrets every replica of the service shares, by name.
//! The first is `page_token_key`, the key page tokens are signed with (see
//! `store::secrets` in the service): the first replica that needs it inserts
//! a random one (`ON CONFLICT DO NOTHING`, so replicas starting together
//! agree on one) and every replica reads it from here.

use sea_orm_migration::prelude::*;

const UP: &[&str] = &["CREATE TABLE service_secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        create_time BIGINT NOT NULL
    )"];

const DOWN: &[&str] = &["DROP TABLE service_secrets"];

sql_migration!();
