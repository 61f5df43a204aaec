//! HMAC-SHA512 request signing, both sides (CoinsPaid's scheme): the client
//! sends its key id in `X-Processing-Key` and the HMAC-SHA512 of the exact
//! raw body, keyed with its secret, in `X-Processing-Signature`. The secret
//! never travels. The server keeps the secret sealed under a host-held key.
//!
//! Run with `cargo run --example signed_requests`.
#![allow(clippy::print_stdout)]

use api_keys::signing::{ReplayConfig, ReplayRequest};
use api_keys::{
    Actor, KeyManager, MemoryKeyStore, NewKey, OwnerId, Policy, RequestContext, RequestSigner,
    RollOptions, SealingKey, SealingKeyRing, SignatureConfig, SignedRequest,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Server side: the sealing key comes from outside the store (an
    // environment variable, a KMS); here a fixed demo value.
    let sealing = SealingKeyRing::new(SealingKey::new(1, &[0x5a; 32])?);
    let server = KeyManager::builder(MemoryKeyStore::new())
        .sealing_keys(sealing)
        .build()?;
    let admin = Actor::new("owner:1")?;
    let merchant = OwnerId::new("merchant_42")?;

    // Generate (CoinsPaid): the key joins the list of generated keys with
    // its public id, and no secret exists yet.
    let generated = server.create_pending(
        &admin,
        NewKey::secret(merchant.clone(), "payments API").signing(),
    )?;
    for key in server.list(&merchant)? {
        println!("generated: {}  {}  {}", key.id, key.status, key.redacted);
    }
    // Activate, with the IPs requests will come from: the secret is minted
    // now and shown this once (a second activation never shows it again).
    let ips = api_keys::IpAllowList::parse("203.0.113.7, 2001:db8::7")?;
    let activated = server.activate_pending(&admin, &generated.id, Some(ips))?;
    let secret = activated.token;
    println!("API key (X-Processing-Key): {}", generated.id);
    println!("secret key (shown once):    {}", secret.expose_secret());
    let again = server.activate_pending(&admin, &generated.id, None);
    println!(
        "activating again:           {}",
        again.map_or_else(|e| e.to_string(), |_| "a second secret?!".into())
    );

    // Client side: sign the exact bytes that will be sent.
    let body = br#"{"currency":"BTC","foreign_id":"123456"}"#;
    let client = RequestSigner::for_token(secret.expose_secret())?;
    let headers = client.sign(body);
    println!("\nPOST /v2/withdrawal/crypto");
    for (name, value) in headers.pairs() {
        println!("  {name}: {value}");
    }

    // Server side again: verify the raw header values and the raw body.
    let from_allowed_ip = RequestContext::new().peer_ip("203.0.113.7".parse()?);
    let check = |key: &str, sig: &str, body: &[u8]| match server.verify_signed(
        &SignedRequest::new(key.as_bytes(), sig.as_bytes(), body),
        &from_allowed_ip,
    ) {
        Ok(v) => format!("accepted for {} ({})", v.owner(), v.environment()),
        Err(e) => format!(
            "refused: {} (HTTP {})",
            e.rejection().map_or("service failure", |r| r.as_str()),
            e.http_status()
        ),
    };
    println!(
        "\nserver: {}",
        check(&headers.key, &headers.signature, body)
    );
    // One byte changed: "BTC" becomes "BTX".
    let tampered = String::from_utf8_lossy(body).replace("BTC", "BTX");
    let tampered = tampered.as_bytes();
    println!(
        "tampered body: {}",
        check(&headers.key, &headers.signature, tampered)
    );

    // Bearer use of a signing key is refused: its secret must never travel.
    let bearer = server.verify(secret.expose_secret(), &from_allowed_ip);
    println!(
        "signing key sent as bearer: {}",
        bearer
            .err()
            .and_then(|e| e.rejection())
            .map_or("?", |r| r.as_str())
    );

    // From an address outside the list: refused.
    let elsewhere = server.verify_signed(
        &SignedRequest::new(headers.key.as_bytes(), headers.signature.as_bytes(), body),
        &RequestContext::new().peer_ip("198.51.100.1".parse()?),
    );
    println!(
        "from another address: {}",
        elsewhere
            .err()
            .and_then(|e| e.rejection())
            .map_or("?", |r| r.as_str())
    );

    // Rolling: both secrets verify during the grace window, each under its own id.
    let rolled = server.roll(&admin, &generated.id, RollOptions::default())?;
    let new_client = RequestSigner::for_token(rolled.token.expose_secret())?;
    let new_headers = new_client.sign(body);
    println!(
        "\nafter roll, old key: {}",
        check(&headers.key, &headers.signature, body)
    );
    println!(
        "after roll, new key: {}",
        check(&new_headers.key, &new_headers.signature, body)
    );

    // Lost or leaked secret (CoinsPaid's FAQ): deactivate the key, then
    // generate and activate a new one.
    server.deactivate(&admin, &generated.id)?;
    server.deactivate(&admin, &rolled.successor.id)?;
    println!(
        "\nafter deactivation:          {}",
        check(&new_headers.key, &new_headers.signature, body)
    );
    let replacement = server.create_pending(
        &admin,
        NewKey::secret(merchant.clone(), "payments API v2").signing(),
    )?;
    let replacement = server.activate_pending(&admin, &replacement.id, None)?;
    let replacement_headers =
        RequestSigner::for_token(replacement.token.expose_secret())?.sign(body);
    println!(
        "replacement key:             {}",
        check(
            &replacement_headers.key,
            &replacement_headers.signature,
            body
        )
    );

    // The vendor's body-only signature can be replayed verbatim: hosts must
    // deduplicate on a business id (`foreign_id`). The opt-in
    // replay-protected mode signs a timestamp, a nonce, the method and the
    // path too, and refuses a nonce seen within the window.
    let strict = KeyManager::builder(MemoryKeyStore::new())
        .sealing_keys(SealingKeyRing::new(SealingKey::new(1, &[0x5a; 32])?))
        .policy(Policy {
            signatures: SignatureConfig {
                replay: Some(ReplayConfig::default()),
                ..SignatureConfig::default()
            },
            ..Policy::default()
        })
        .build()?;
    let key = strict.create(&admin, NewKey::secret(merchant, "strict").signing())?;
    let client = RequestSigner::for_token(key.token.expose_secret())?;
    let signed = client.sign_replay_protected(
        &ReplayRequest {
            timestamp: strict.now(),
            nonce: "3f2b8c0d9e1a4b5c6d7e8f9a0b1c2d3e",
            method: "POST",
            path: "/v2/withdrawal/crypto",
        },
        body,
    )?;
    let request = SignedRequest::new(signed.key.as_bytes(), signed.signature.as_bytes(), body)
        .replay_protected(
            signed.timestamp.as_deref().unwrap_or_default().as_bytes(),
            signed.nonce.as_deref().unwrap_or_default().as_bytes(),
            b"POST",
            b"/v2/withdrawal/crypto",
        );
    println!("\nreplay-protected mode:");
    for (name, value) in signed.pairs() {
        println!("  {name}: {value}");
    }
    for attempt in ["first send", "replayed"] {
        let out = strict.verify_signed(&request, &RequestContext::new());
        println!(
            "  {attempt}: {}",
            out.map_or_else(
                |e| format!(
                    "refused: {}",
                    e.rejection().map_or("failure", |r| r.as_str())
                ),
                |_| "accepted".to_owned()
            )
        );
    }
    Ok(())
}
