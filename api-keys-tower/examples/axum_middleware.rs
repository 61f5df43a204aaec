//! An axum API protected by `api_keys_tower::ApiKeyLayer`: bearer keys
//! (`Authorization: Bearer` or `X-Api-Key`), signed requests
//! (`X-Processing-Key` + `X-Processing-Signature` over the raw body),
//! scopes, environment and kind per route, Origin/Referer and IP
//! allow-lists. The routes are in `examples/common/axum_app.rs`.
//!
//! ```sh
//! cargo run -p api-keys-tower --example axum_middleware                 # demo: serve, call itself, exit
//! cargo run -p api-keys-tower --example axum_middleware -- --serve 120  # serve 120 s (or until Ctrl-C)
//! ```
#![allow(clippy::print_stdout, reason = "demo output")]

#[path = "common/axum_app.rs"]
pub mod axum_app;

use api_keys::{
    Actor, Environment, KeyManager, MemoryKeyStore, NewKey, OwnerId, RequestSigner, SealingKey,
    SealingKeyRing, Token,
};
use rand::TryRng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long `--serve` keeps the server up without an argument.
const DEFAULT_SERVE_SECS: u64 = 120;

/// The body of the demo's signed request.
const WITHDRAWAL: &str = r#"{"currency":"BTC","amount":"0.01","foreign_id":"w-1001"}"#;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let serve_for = parse_args()?;

    // The sealing key protects signing secrets at rest: load it from your
    // secret manager. The demo draws a fresh one.
    let mut sealing = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut sealing)
        .map_err(|_| "the OS random generator failed")?;
    let keys = Arc::new(
        KeyManager::builder(MemoryKeyStore::new())
            .sealing_keys(SealingKeyRing::new(SealingKey::new(1, &sealing)?))
            .build()?,
    );
    let admin = Actor::new("demo:admin")?;
    let owner = OwnerId::new("acct_demo")?;
    let bearer = keys
        .create_async(
            &admin,
            NewKey::secret(owner.clone(), "demo key").environment(Environment::Test),
        )
        .await?
        .token;
    let signing = keys
        .create_async(
            &admin,
            NewKey::secret(owner, "demo signing key")
                .environment(Environment::Test)
                .signing(),
        )
        .await?
        .token;

    let app = axum_app::app_with_refusal_hook(Arc::clone(&keys), |refusal| {
        // Reasons and public key ids, never header values: safe to log.
        eprintln!(
            "refused {} {} -> {} ({}) key {:?}",
            refusal.method,
            refusal.path,
            refusal.refusal.status(),
            refusal.refusal.reason(),
            refusal.key_id.map(|id| id.to_string()),
        );
        // A 500: the store's cause is in the error's source() chain.
        let mut cause = refusal.refusal.error().map(|e| e as &dyn std::error::Error);
        while let Some(e) = cause {
            eprintln!("  caused by: {e}");
            cause = e.source();
        }
    })?;
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ignored = stopped.await;
        })
        .await
    });

    let signer = RequestSigner::for_token(signing.expose_secret())?;
    let signed = signer.sign(WITHDRAWAL.as_bytes());
    println!("Listening on {base}. Try:");
    println!(
        "  curl -i {base}/v1/whoami -H 'Authorization: Bearer {}'",
        bearer.expose_secret()
    );
    println!(
        "  curl -i {base}/v1/whoami -H 'X-Api-Key: {}'",
        bearer.expose_secret()
    );
    println!(
        "  curl -i {base}/v1/live/balance -H 'X-Api-Key: {}'   # 403: a test key",
        bearer.expose_secret()
    );
    println!(
        "  curl -i {base}/v1/withdrawals -H 'X-Processing-Key: {}' -H 'X-Processing-Signature: {}' --data-binary '{WITHDRAWAL}'",
        signed.key, signed.signature
    );

    let outcome = match serve_for {
        None => {
            println!("\nDemo (pass --serve to keep the server up):");
            demo(&base, &bearer, &signer).await
        }
        Some(limit) => {
            println!("\nServing for {} s; Ctrl-C stops earlier.", limit.as_secs());
            tokio::select! {
                result = tokio::signal::ctrl_c() => result.map_err(BoxError::from),
                () = tokio::time::sleep(limit) => Ok(()),
            }
        }
    };

    // Graceful shutdown: stop accepting, let requests in flight finish.
    let _ignored = stop.send(());
    server.await??;
    println!("Server stopped.");
    outcome
}

/// `None`: run the demo and exit; `Some(d)`: serve for `d`.
fn parse_args() -> Result<Option<Duration>, BoxError> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => Ok(None),
        Some("--serve") => {
            let secs = match args.next() {
                Some(s) => s.parse().map_err(|_| "--serve takes a number of seconds")?,
                None => DEFAULT_SERVE_SECS,
            };
            Ok(Some(Duration::from_secs(secs)))
        }
        Some(_) => Err("usage: axum_middleware [--serve [SECONDS]]".into()),
    }
}

/// Calls the server with a real HTTP client and checks each status.
async fn demo(base: &str, bearer: &Token, signer: &RequestSigner) -> Result<(), BoxError> {
    // Loopback only: never route these through a proxy from the environment.
    let client = reqwest::Client::builder().no_proxy().build()?;
    let token = bearer.expose_secret();
    let tampered = WITHDRAWAL.replace("0.01", "9.01");
    let signed = signer.sign(WITHDRAWAL.as_bytes());

    let calls = [
        (
            "GET /v1/whoami, Authorization: Bearer",
            client.get(format!("{base}/v1/whoami")).bearer_auth(token),
            200,
        ),
        (
            "GET /v1/whoami, X-Api-Key",
            client
                .get(format!("{base}/v1/whoami"))
                .header("X-Api-Key", token),
            200,
        ),
        (
            "GET /v1/whoami, no key",
            client.get(format!("{base}/v1/whoami")),
            401,
        ),
        (
            "GET /v1/whoami, Authorization: Basic",
            client
                .get(format!("{base}/v1/whoami"))
                .basic_auth("user", Some("password")),
            401,
        ),
        (
            "GET /v1/live/balance, test key",
            client
                .get(format!("{base}/v1/live/balance"))
                .bearer_auth(token),
            403,
        ),
        (
            "POST /v1/withdrawals, signed",
            client
                .post(format!("{base}/v1/withdrawals"))
                .header("X-Processing-Key", &signed.key)
                .header("X-Processing-Signature", &signed.signature)
                .body(WITHDRAWAL),
            200,
        ),
        (
            "POST /v1/withdrawals, body changed",
            client
                .post(format!("{base}/v1/withdrawals"))
                .header("X-Processing-Key", &signed.key)
                .header("X-Processing-Signature", &signed.signature)
                .body(tampered),
            401,
        ),
    ];

    let mut unexpected = 0;
    for (label, request, expected) in calls {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        let mark = if status == expected {
            "ok"
        } else {
            "UNEXPECTED"
        };
        println!("  {label:<40} -> {status} {body}  [{mark}]");
        if status != expected {
            unexpected += 1;
        }
    }
    if unexpected == 0 {
        Ok(())
    } else {
        Err(format!("{unexpected} unexpected status code(s)").into())
    }
}
