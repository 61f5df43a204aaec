//! Adversarial table: `Origin` / `Referer` header combinations through
//! `DomainAllowList::check` for a fixed list, and the same rows end to end
//! through `KeyManager::verify` (refusals become `OriginNotAllowed`, carrying
//! the list's precise reason).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity,
    reason = "test code: a failed expectation should panic"
)]
use HeaderField::{Absent, Repeated};
use OriginRefusal as R;
use api_keys::origin::{MAX_HEADER_LEN, OriginRefusal};
use api_keys::{
    Actor, DomainAllowList, HeaderField, KeyManager, MemoryKeyStore, NewKey, OwnerId, Policy,
    Rejection, RequestContext, VerifyError,
};

/// The fixed allow-list every row is checked against.
const LIST: [&str; 2] = ["example.com", "*.shop.example.org"];

/// Origin, Referer, allow_http, expected outcome, why.
type Row<'a> = (
    HeaderField<'a>,
    HeaderField<'a>,
    bool,
    Result<(), OriginRefusal>,
    String,
);

fn s(v: &str) -> HeaderField<'_> {
    HeaderField::Single(v.as_bytes())
}

fn b(v: &[u8]) -> HeaderField<'_> {
    HeaderField::Single(v)
}

/// Inputs that need owned storage.
struct Long {
    label63: String,
    label64: String,
    name_over_253: String,
    name_253: String,
    over_cap: String,
    referer_at_cap: String,
}

fn long() -> Long {
    let l63 = "a".repeat(63);
    // Four 63-character labels exceed 253 characters with the suffix.
    let name_over_253 = format!("https://{l63}.{l63}.{l63}.{l63}.shop.example.org");
    // Exactly 253 characters: three 63-character labels, one filler label
    // and ".shop.example.org".
    let tail = ".shop.example.org";
    let head_len = 253 - tail.len();
    let mut head = String::new();
    while head.len() + 64 <= head_len {
        head.push_str(&l63);
        head.push('.');
    }
    let rest = head_len - head.len();
    head.push_str(&"b".repeat(rest));
    let name_253 = format!("https://{head}{tail}");
    assert_eq!(name_253.len() - "https://".len(), 253);
    let base = "https://a.shop.example.org/";
    Long {
        label63: format!("https://{l63}.shop.example.org"),
        label64: format!("https://{}.shop.example.org", "a".repeat(64)),
        name_over_253,
        name_253,
        over_cap: format!("{base}{}", "p".repeat(MAX_HEADER_LEN + 1 - base.len())),
        referer_at_cap: format!("{base}{}", "p".repeat(MAX_HEADER_LEN - base.len())),
    }
}

/// Single-header rows: each value is checked as `Origin` (Referer absent)
/// and, where the row says so, as `Referer` (Origin absent).
fn single_rows(l: &Long) -> Vec<(&[u8], bool, Result<(), R>, Result<(), R>, &'static str)> {
    #[rustfmt::skip]
    let rows: Vec<(&[u8], bool, Result<(), R>, Result<(), R>, &'static str)> = vec![
        // value, allow_http, as Origin, as Referer, why
        (b"https://example.com", false, Ok(()), Ok(()), "exact entry"),
        (b"HTTPS://EXAMPLE.COM", false, Ok(()), Ok(()), "scheme and host compared case-insensitively"),
        (b"HtTpS://ExAmPlE.cOm", false, Ok(()), Ok(()), "mixed case everywhere"),
        (b"https://example.com:8443", false, Ok(()), Ok(()), "non-default port"),
        (b"https://example.com:1", false, Ok(()), Ok(()), "lowest port"),
        (b"https://example.com:65535", false, Ok(()), Ok(()), "highest port"),
        (b"https://example.com:0", false, Err(R::Malformed), Err(R::Malformed), "port zero"),
        (b"https://example.com:65536", false, Err(R::Malformed), Err(R::Malformed), "port one past the range"),
        (b"https://example.com:99999", false, Err(R::Malformed), Err(R::Malformed), "five-digit port out of range"),
        (b"https://example.com:123456", false, Err(R::Malformed), Err(R::Malformed), "six-digit port"),
        (b"https://example.com:443", false, Err(R::Malformed), Err(R::Malformed), "explicit default port is not canonical"),
        (b"https://example.com:0443", false, Err(R::Malformed), Err(R::Malformed), "leading zero in the port"),
        (b"https://example.com:+443", false, Err(R::Malformed), Err(R::Malformed), "signed port"),
        (b"https://example.com:-1", false, Err(R::Malformed), Err(R::Malformed), "negative port"),
        (b"https://example.com:", false, Err(R::Malformed), Err(R::Malformed), "empty port"),
        (b"https://example.com:8443:8443", false, Err(R::Malformed), Err(R::Malformed), "two ports"),
        (b"https://example.com.", false, Err(R::Malformed), Err(R::Malformed), "trailing dot (another origin for browsers)"),
        (b"https://example.com..", false, Err(R::Malformed), Err(R::Malformed), "two trailing dots"),
        (b"https://.example.com", false, Err(R::Malformed), Err(R::Malformed), "leading dot"),
        (b"http://example.com", false, Err(R::InsecureScheme), Err(R::InsecureScheme), "plain http refused by default"),
        (b"http://example.com", true, Ok(()), Ok(()), "plain http when the policy allows it"),
        (b"http://example.com:443", true, Ok(()), Ok(()), "443 is not http's default port"),
        (b"http://example.com:80", true, Err(R::Malformed), Err(R::Malformed), "explicit http default port"),
        (b"http://localhost", true, Err(R::LocalhostHost), Err(R::LocalhostHost), "http localhost"),
        // IP literals
        (b"https://[::1]", false, Err(R::IpLiteralHost), Err(R::IpLiteralHost), "IPv6 loopback literal"),
        (b"https://[2001:db8::1]:8443", false, Err(R::IpLiteralHost), Err(R::IpLiteralHost), "IPv6 literal with port"),
        (b"https://[::ffff:93.184.216.34]", false, Err(R::IpLiteralHost), Err(R::IpLiteralHost), "IPv4-mapped IPv6 literal"),
        (b"https://[::1]:443", false, Err(R::Malformed), Err(R::Malformed), "IPv6 literal with explicit default port"),
        (b"https://[::1]x", false, Err(R::Malformed), Err(R::Malformed), "junk after the bracket"),
        (b"https://[fe80::1%25eth0]", false, Err(R::Malformed), Err(R::Malformed), "IPv6 literal with zone id"),
        (b"https://[example.com]", false, Err(R::Malformed), Err(R::Malformed), "host name in brackets"),
        (b"https://::1", false, Err(R::Malformed), Err(R::Malformed), "unbracketed IPv6"),
        (b"https://93.184.216.34", false, Err(R::IpLiteralHost), Err(R::IpLiteralHost), "IPv4 literal"),
        (b"https://0x5db8d822", false, Err(R::IpLiteralHost), Err(R::IpLiteralHost), "IPv4 as one hex number"),
        (b"https://example.com.1", false, Err(R::IpLiteralHost), Err(R::IpLiteralHost), "host ending in a number parses as IPv4 in browsers"),
        (b"https://example.0x", false, Err(R::IpLiteralHost), Err(R::IpLiteralHost), "last label `0x` is numeric for WHATWG"),
        // localhost
        (b"https://localhost", false, Err(R::LocalhostHost), Err(R::LocalhostHost), "localhost"),
        (b"https://a.localhost:3000", false, Err(R::LocalhostHost), Err(R::LocalhostHost), "below localhost"),
        (b"https://LOCALHOST", false, Err(R::LocalhostHost), Err(R::LocalhostHost), "localhost upper-case"),
        (b"https://localhost.", false, Err(R::Malformed), Err(R::Malformed), "localhost with trailing dot"),
        (b"https://localhost.localdomain", false, Err(R::LocalhostHost), Err(R::LocalhostHost), "localhost alias"),
        (b"https://a.localhost.localdomain", false, Err(R::LocalhostHost), Err(R::LocalhostHost), "below the localhost alias"),
        (b"https://localhost6.localdomain6:8443", false, Err(R::LocalhostHost), Err(R::LocalhostHost), "IPv6 localhost alias"),
        // A bad host is Malformed whatever the scheme policy says.
        (b"http://example.com.", false, Err(R::Malformed), Err(R::Malformed), "trailing dot under plain http"),
        (b"http://:8080", false, Err(R::Malformed), Err(R::Malformed), "empty host under plain http"),
        (b"http://", false, Err(R::Malformed), Err(R::Malformed), "no host under plain http"),
        // IDN
        (b"https://ex\xc3\xa4mple.com", false, Err(R::Malformed), Err(R::Malformed), "raw UTF-8 host (browsers send A-labels)"),
        (b"https://\xd0\xb5xample.com", false, Err(R::Malformed), Err(R::Malformed), "Cyrillic look-alike, raw UTF-8"),
        (b"https://xn--xample-2of.com", false, Err(R::NotListed), Err(R::NotListed), "Cyrillic look-alike as punycode"),
        (b"https://xn--mnchen-3ya.shop.example.org", false, Ok(()), Ok(()), "punycode label under the wildcard"),
        (b"https://XN--MNCHEN-3YA.SHOP.EXAMPLE.ORG", false, Ok(()), Ok(()), "upper-case punycode under the wildcard"),
        (b"https://m\xc3\xbcnchen.shop.example.org", false, Err(R::Malformed), Err(R::Malformed), "Unicode label under the wildcard"),
        (b"https://\xef\xbd\x85xample.com", false, Err(R::Malformed), Err(R::Malformed), "full-width letter"),
        (b"https://example\xe3\x80\x82com", false, Err(R::Malformed), Err(R::Malformed), "ideographic full stop as separator"),
        // whitespace and controls
        (b"https://example.com\r\n", false, Err(R::Malformed), Err(R::Malformed), "trailing CRLF"),
        (b"https://example.com\r\nX-Evil: 1", false, Err(R::Malformed), Err(R::Malformed), "header injection"),
        (b"https://exa\tmple.com", false, Err(R::Malformed), Err(R::Malformed), "tab inside the host"),
        (b"\thttps://example.com", false, Err(R::Malformed), Err(R::Malformed), "leading tab"),
        (b" https://example.com", false, Err(R::Malformed), Err(R::Malformed), "leading space"),
        (b"https://example.com ", false, Err(R::Malformed), Err(R::Malformed), "trailing space"),
        (b"https://example.com\0", false, Err(R::Malformed), Err(R::Malformed), "trailing NUL"),
        (b"https://example.com\x7f", false, Err(R::Malformed), Err(R::Malformed), "DEL"),
        (b"\xff\xfe", false, Err(R::Malformed), Err(R::Malformed), "invalid UTF-8"),
        // structure
        (b"//example.com", false, Err(R::Malformed), Err(R::Malformed), "scheme-relative"),
        (b"example.com", false, Err(R::Malformed), Err(R::Malformed), "bare host"),
        (b"https:example.com", false, Err(R::Malformed), Err(R::Malformed), "no slashes"),
        (b"https:/example.com", false, Err(R::Malformed), Err(R::Malformed), "one slash"),
        (b"https:///example.com", false, Err(R::Malformed), Err(R::Malformed), "three slashes (empty authority)"),
        (b"https://", false, Err(R::Malformed), Err(R::Malformed), "no host"),
        (b"https://:8443", false, Err(R::Malformed), Err(R::Malformed), "port without host"),
        (b"https://example.com?", false, Err(R::Malformed), Ok(()), "empty query: never in Origin, allowed in Referer"),
        (b"https://example.com#", false, Err(R::Malformed), Err(R::Malformed), "empty fragment: never in either"),
        (b"https://example.com/", false, Err(R::Malformed), Ok(()), "trailing slash: never in Origin, allowed in Referer"),
        (b"https://example.com/a/b?c=d", false, Err(R::Malformed), Ok(()), "path and query"),
        (b"https://example.com\\", false, Err(R::Malformed), Err(R::Malformed), "trailing backslash"),
        (b"https:\\\\example.com", false, Err(R::Malformed), Err(R::Malformed), "backslashes for slashes"),
        (b"https://evil.com\\.example.com", false, Err(R::Malformed), Err(R::Malformed), "backslash inside the host"),
        (b"https://evil.com\\@example.com", false, Err(R::Malformed), Err(R::Malformed), "backslash-at trick"),
        (b"https://example.com@evil.com", false, Err(R::Userinfo), Err(R::Userinfo), "listed host as userinfo"),
        (b"https://evil.com@example.com", false, Err(R::Userinfo), Err(R::Userinfo), "userinfo before the listed host"),
        (b"https://@example.com", false, Err(R::Userinfo), Err(R::Userinfo), "empty userinfo"),
        (b"https://user:pass@example.com", false, Err(R::Userinfo), Err(R::Userinfo), "credentials"),
        (b"https://example.com%40evil.com", false, Err(R::Malformed), Err(R::Malformed), "percent-encoded @"),
        (b"https://evil.com?@example.com", false, Err(R::Malformed), Err(R::NotListed), "@ in the query is not userinfo"),
        (b"https://evil.com/@example.com", false, Err(R::Malformed), Err(R::NotListed), "@ in the path is not userinfo"),
        (b"https://evil.com#@example.com", false, Err(R::Malformed), Err(R::Malformed), "fragment-at trick"),
        (b"https://evil.com/https://example.com", false, Err(R::Malformed), Err(R::NotListed), "listed URL inside the path"),
        (b"https://example%2Ecom", false, Err(R::Malformed), Err(R::Malformed), "percent-encoded dot (upper)"),
        (b"https://example%2ecom", false, Err(R::Malformed), Err(R::Malformed), "percent-encoded dot (lower)"),
        (b"https://%65xample.com", false, Err(R::Malformed), Err(R::Malformed), "percent-encoded letter"),
        (b"https://exam_ple.com", false, Err(R::Malformed), Err(R::Malformed), "underscore"),
        (b"https://-example.com", false, Err(R::Malformed), Err(R::Malformed), "leading hyphen"),
        (b"https://example-.com", false, Err(R::Malformed), Err(R::Malformed), "trailing hyphen"),
        (b"https://*.shop.example.org", false, Err(R::Malformed), Err(R::Malformed), "literal wildcard in the header"),
        // schemes
        (b"null", false, Err(R::NullOrigin), Err(R::Malformed), "null: an opaque Origin, never a Referer"),
        (b"NULL", false, Err(R::Malformed), Err(R::Malformed), "upper-case NULL is just malformed"),
        (b"", false, Err(R::Empty), Err(R::Empty), "present but empty"),
        (b"ws://example.com", false, Err(R::UnsupportedScheme), Err(R::UnsupportedScheme), "websocket scheme"),
        (b"ftp://example.com", false, Err(R::UnsupportedScheme), Err(R::UnsupportedScheme), "ftp scheme"),
        (b"javascript:alert(1)", false, Err(R::UnsupportedScheme), Err(R::UnsupportedScheme), "javascript: URL"),
        (b"https+evil://example.com", false, Err(R::UnsupportedScheme), Err(R::UnsupportedScheme), "scheme with a plus"),
        (b"1https://example.com", false, Err(R::Malformed), Err(R::Malformed), "scheme starting with a digit"),
        // the exact and wildcard entries
        (b"https://sub.example.com", false, Err(R::NotListed), Err(R::NotListed), "exact entry does not cover subdomains"),
        (b"https://example.com.evil.com", false, Err(R::NotListed), Err(R::NotListed), "listed name as a prefix"),
        (b"https://evil-example.com", false, Err(R::NotListed), Err(R::NotListed), "hyphenated neighbour"),
        (b"https://wwwexample.com", false, Err(R::NotListed), Err(R::NotListed), "no label boundary"),
        (b"https://example.co", false, Err(R::NotListed), Err(R::NotListed), "shorter TLD"),
        (b"https://a.shop.example.org", false, Ok(()), Ok(()), "wildcard, one label"),
        (b"https://a.b.shop.example.org:8443", false, Ok(()), Ok(()), "wildcard, two labels and a port"),
        (b"https://shop.example.org", false, Err(R::NotListed), Err(R::NotListed), "wildcard never matches its apex"),
        (b"https://ashop.example.org", false, Err(R::NotListed), Err(R::NotListed), "wildcard needs a label boundary"),
        (b"https://a.shop.example.org.evil.com", false, Err(R::NotListed), Err(R::NotListed), "wildcard match as a prefix"),
        (b"https://example.org", false, Err(R::NotListed), Err(R::NotListed), "parent of the wildcard"),
        (b"https://a.example.org", false, Err(R::NotListed), Err(R::NotListed), "sibling of the wildcard"),
        (l.label63.as_bytes(), false, Ok(()), Ok(()), "63-character label under the wildcard"),
        (l.label64.as_bytes(), false, Err(R::Malformed), Err(R::Malformed), "64-character label"),
        (l.name_253.as_bytes(), false, Ok(()), Ok(()), "253-character name under the wildcard"),
        (l.name_over_253.as_bytes(), false, Err(R::Malformed), Err(R::Malformed), "name over 253 characters"),
        (l.over_cap.as_bytes(), false, Err(R::TooLong), Err(R::TooLong), "one byte over MAX_HEADER_LEN"),
        (l.referer_at_cap.as_bytes(), false, Err(R::Malformed), Ok(()), "exactly MAX_HEADER_LEN: a path is fine in Referer"),
    ];
    rows
}

/// A class of header value, for the combination rows.
#[derive(Clone, Copy)]
enum Class {
    Absent,
    Repeated,
    Listed,
    Unlisted,
    Malformed,
    Null,
    Empty,
    Insecure,
    TooLong,
}

impl Class {
    const ALL: [Class; 9] = [
        Class::Absent,
        Class::Repeated,
        Class::Listed,
        Class::Unlisted,
        Class::Malformed,
        Class::Null,
        Class::Empty,
        Class::Insecure,
        Class::TooLong,
    ];

    fn name(self) -> &'static str {
        match self {
            Class::Absent => "absent",
            Class::Repeated => "repeated",
            Class::Listed => "listed",
            Class::Unlisted => "unlisted",
            Class::Malformed => "malformed",
            Class::Null => "null",
            Class::Empty => "empty",
            Class::Insecure => "http",
            Class::TooLong => "too long",
        }
    }

    fn field(self, too_long: &[u8], origin: bool) -> HeaderField<'_> {
        match self {
            Class::Absent => Absent,
            Class::Repeated => Repeated,
            Class::Listed if origin => s("https://a.shop.example.org"),
            Class::Listed => s("https://example.com/checkout?step=2"),
            Class::Unlisted if origin => s("https://evil.example.net"),
            Class::Unlisted => s("https://evil.example.net/example.com"),
            Class::Malformed => s("https://example.com/\\"),
            Class::Null => s("null"),
            Class::Empty => s(""),
            Class::Insecure => s("http://example.com"),
            Class::TooLong => b(too_long),
        }
    }

    /// The outcome of this header when it is the one consulted.
    fn outcome(self, as_origin: bool) -> Result<(), R> {
        match self {
            Class::Absent => Err(R::Missing),
            Class::Repeated => Err(R::Repeated),
            Class::Listed => Ok(()),
            Class::Unlisted => Err(R::NotListed),
            Class::Malformed => Err(R::Malformed),
            Class::Null if as_origin => Err(R::NullOrigin),
            Class::Null => Err(R::Malformed),
            Class::Empty => Err(R::Empty),
            Class::Insecure => Err(R::InsecureScheme),
            Class::TooLong => Err(R::TooLong),
        }
    }
}

/// Every combination of the two headers: Origin decides whenever it is
/// present (whatever it holds); Referer only when Origin is absent.
fn combination_rows(too_long: &[u8]) -> Vec<Row<'_>> {
    let mut rows = Vec::new();
    for origin in Class::ALL {
        for referer in Class::ALL {
            let expected = match origin {
                Class::Absent => referer.outcome(false),
                _ => origin.outcome(true),
            };
            let decider = if matches!(origin, Class::Absent) {
                "Referer decides"
            } else {
                "Origin decides"
            };
            rows.push((
                origin.field(too_long, true),
                referer.field(too_long, false),
                false,
                expected,
                format!(
                    "Origin {} + Referer {}: {decider}",
                    origin.name(),
                    referer.name()
                ),
            ));
        }
    }
    rows
}

fn all_rows<'a>(l: &'a Long) -> Vec<Row<'a>> {
    let mut rows: Vec<Row<'a>> = Vec::new();
    for (value, allow_http, as_origin, as_referer, why) in single_rows(l) {
        rows.push((
            b(value),
            Absent,
            allow_http,
            as_origin,
            format!("Origin: {why}"),
        ));
        rows.push((
            Absent,
            b(value),
            allow_http,
            as_referer,
            format!("Referer: {why}"),
        ));
        // A Referer never rescues a refused Origin, and never spoils an accepted one.
        rows.push((
            b(value),
            s("https://example.com/"),
            allow_http,
            as_origin,
            format!("Origin decides over a listed Referer: {why}"),
        ));
        rows.push((
            b(value),
            s("https://evil.example.net/"),
            allow_http,
            as_origin,
            format!("Origin decides over an unlisted Referer: {why}"),
        ));
        rows.push((
            b(value),
            Repeated,
            allow_http,
            as_origin,
            format!("Origin decides over a repeated Referer: {why}"),
        ));
    }
    rows.extend(combination_rows(l.over_cap.as_bytes()));
    rows
}

#[test]
fn origin_and_referer_table() {
    let list = DomainAllowList::new(LIST).unwrap();
    let l = long();
    let rows = all_rows(&l);
    assert!(rows.len() >= 500, "table shrank: {} rows", rows.len());
    for (origin, referer, allow_http, expected, why) in &rows {
        assert_eq!(
            list.check(*origin, *referer, *allow_http),
            *expected,
            "{why} (origin={origin:?}, referer={referer:?}, allow_http={allow_http})"
        );
    }
}

/// The same rows end to end: a key carrying the list is accepted exactly
/// when the list accepts the headers, otherwise refused as
/// `OriginNotAllowed` (403) with the very reason the list gave.
#[test]
fn origin_and_referer_through_verify() {
    let admin = Actor::system();
    let owner = OwnerId::new("acct_origin").unwrap();
    let managers: Vec<(bool, KeyManager<MemoryKeyStore>, String)> = [false, true]
        .into_iter()
        .map(|allow_http| {
            let keys = KeyManager::builder(MemoryKeyStore::new())
                .policy(Policy {
                    allow_http_origins: allow_http,
                    ..Policy::default()
                })
                .build()
                .unwrap();
            let token = keys
                .create(
                    &admin,
                    NewKey::publishable(owner.clone(), "web")
                        .allowed_domains(DomainAllowList::new(LIST).unwrap()),
                )
                .unwrap()
                .token
                .expose_secret()
                .to_owned();
            (allow_http, keys, token)
        })
        .collect();
    let l = long();
    for (origin, referer, allow_http, expected, why) in all_rows(&l) {
        let (_, keys, token) = managers.iter().find(|m| m.0 == allow_http).unwrap();
        let ctx = RequestContext::new().origin(origin).referer(referer);
        let got = keys.verify(token, &ctx);
        match (&expected, &got) {
            (Ok(()), Ok(_)) => {}
            (Err(want), Err(VerifyError::Rejected(Rejection::OriginNotAllowed(reason)))) => {
                assert_eq!(reason, want, "{why}");
                assert_eq!(got.unwrap_err().http_status(), 403, "{why}");
            }
            _ => panic!("{why}: expected {expected:?}, got {got:?}"),
        }
    }
}

/// A key without a list ignores the headers entirely, however hostile.
#[test]
fn no_list_means_no_restriction() {
    let list = DomainAllowList::new(Vec::<&str>::new()).unwrap();
    let l = long();
    for (origin, referer, allow_http, _, why) in all_rows(&l) {
        assert_eq!(list.check(origin, referer, allow_http), Ok(()), "{why}");
    }
}
