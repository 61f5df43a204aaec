//! A key store on the pool the service already has.
use api_keys::sqlx::PgPool; // the sqlx the stores use (0.8), re-exported
use api_keys::{KeyManager, PostgresKeyStore, SqliteKeyStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")?; // postgres://app:…@db.internal/app
    let pool = PgPool::connect(&url).await?; // the pool your service already runs

    let store = PostgresKeyStore::from_pool(pool); // or SqliteKeyStore / MySqlKeyStore
    store.migrate().await?; // idempotent: at every start
    let keys = KeyManager::new(store); // then keys.create_async, verify_async, …
    let page = keys.list_all_async(None, 100).await?;
    eprintln!("{} keys", page.keys.len());

    // Without a pool: a file (SQLite, WAL, created on first use) or a URL.
    let file = SqliteKeyStore::open("keys.db").await?;
    file.migrate().await?;
    let _server = PostgresKeyStore::connect(&url).await?; // errors never show the URL
    Ok(())
}
