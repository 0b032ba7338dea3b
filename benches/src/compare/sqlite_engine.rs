//! SQLite (bundled, through rusqlite): one table `kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT
//! ROWID` in WAL mode.
//!
//! Durability: `journal_mode=WAL` (stored in the file) and `synchronous=FULL` on every
//! connection, so a commit returns after the WAL has been synced (the bundled build syncs
//! with `fsync`): survives power loss. Single inserts are autocommit statements; batches run
//! in `BEGIN IMMEDIATE ... COMMIT`.
//!
//! Threads: every session is its own connection to the file (a connection is not `Sync`),
//! with a 60 s `busy_timeout`, so concurrent writers wait for the write lock instead of
//! failing. Statements are prepared once per connection (rusqlite's statement cache). The
//! page cache is SQLite's default (2 MB per connection).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::Result;
use crate::compare::engine::{Engine, Pair, Session};

const INSERT: &str = "INSERT INTO kv (k, v) VALUES (?1, ?2)";
const GET: &str = "SELECT v FROM kv WHERE k = ?1";
const RANGE: &str = "SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k LIMIT ?2";
const DELETE: &str = "DELETE FROM kv WHERE k = ?1";

/// A SQLite database file; sessions connect to it.
pub struct SqliteEngine {
    path: PathBuf,
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(60))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("sqlite: journal_mode=WAL was refused, mode is {mode:?}").into());
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let sync: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
    if sync != 2 {
        return Err(format!("sqlite: synchronous=FULL (2) was refused, it is {sync}").into());
    }
    Ok(conn)
}

impl Engine for SqliteEngine {
    const NAME: &'static str = "sqlite";

    type Session<'e> = SqliteSession;

    fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("kv.sqlite");
        let conn = connect(&path)?;
        conn.execute_batch("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID;")?;
        Ok(SqliteEngine { path })
    }

    fn session(&self) -> Result<SqliteSession> {
        Ok(SqliteSession {
            conn: connect(&self.path)?,
        })
    }
}

/// One connection to a [`SqliteEngine`]'s file.
pub struct SqliteSession {
    conn: Connection,
}

impl Session for SqliteSession {
    fn insert_one_durable(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.conn
            .prepare_cached(INSERT)?
            .execute(params![key, value])?;
        Ok(())
    }

    fn insert_batch_durable(&mut self, pairs: &[Pair<'_>]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(INSERT)?;
            for &(k, v) in pairs {
                stmt.execute(params![k, v])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn get(&mut self, key: &[u8], value: &mut Vec<u8>) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached(GET)?;
        let found = stmt
            .query_row(params![key], |row| {
                let v = row.get_ref(0)?.as_blob()?;
                value.clear();
                value.extend_from_slice(v);
                Ok(())
            })
            .optional()?;
        Ok(found.is_some())
    }

    fn range(
        &mut self,
        start: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        out.clear();
        let limit = i64::try_from(limit)?;
        let mut stmt = self.conn.prepare_cached(RANGE)?;
        let mut rows = stmt.query(params![start, limit])?;
        while let Some(row) = rows.next()? {
            let k = row.get_ref(0)?.as_blob()?.to_vec();
            let v = row.get_ref(1)?.as_blob()?.to_vec();
            out.push((k, v));
        }
        Ok(())
    }

    fn remove_batch_durable(&mut self, keys: &[&[u8]]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(DELETE)?;
            for &k in keys {
                if stmt.execute(params![k])? != 1 {
                    return Err(format!(
                        "sqlite: removing key {} that should be present: not found",
                        crate::compare::dataset::hex_prefix(k)
                    )
                    .into());
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
