//! Adversarial tables for IP allow-lists: list texts through
//! `IpAllowList::parse`, peer addresses through `allows` for a fixed list
//! and for `/0` and edge lists, and `ip::client_ip` behind trusted proxies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity,
    reason = "test code: a failed expectation should panic"
)]
use HeaderField::{Absent, Repeated};
use api_keys::ip::{
    ForwardedError, IpNet, MAX_FORWARDED_LEN, MAX_LIST_LEN, ProxyHeader, TrustedProxies, client_ip,
};
use api_keys::{
    Actor, HeaderField, IpAllowList, KeyManager, MemoryKeyStore, NewKey, OwnerId, Rejection,
    RequestContext,
};
use std::net::{IpAddr, SocketAddrV6};

fn ip(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("test address {s:?} does not parse: {e}"))
}

#[test]
fn list_text_table() {
    let too_long = format!("{}1.2.3.4", "1.2.3.4,".repeat(MAX_LIST_LEN / 8));
    let entry_65 = "1".repeat(65);
    // The longest valid entry has 49 bytes; entries over 64 bytes are refused
    // before they are examined. Padded with an inner space, an entry of 64
    // bytes is examined (Whitespace) and one of 65 is not (InvalidAddress).
    let spaced = |len: usize| format!("192.0.2.7 {}", "x".repeat(len - 10));
    let (spaced_63, spaced_64, spaced_65) = (spaced(63), spaced(64), spaced(65));
    // A list of exactly MAX_LIST_LEN bytes is parsed; one byte more is not.
    let pad = |len: usize| format!("192.0.2.7{}", " ".repeat(len - 9));
    let (list_max, list_over) = (pad(MAX_LIST_LEN), pad(MAX_LIST_LEN + 1));
    #[rustfmt::skip]
    let rows: Vec<(&str, Result<&str, &str>, &str)> = vec![
        // text, Ok(canonical display) or Err(error kind), why
        ("192.0.2.7", Ok("192.0.2.7"), "one IPv4 address"),
        ("  192.0.2.7  ", Ok("192.0.2.7"), "spaces around the list"),
        ("\t192.0.2.7\t", Ok("192.0.2.7"), "tabs around the list"),
        ("192.0.2.7\n", Ok("192.0.2.7"), "trailing LF (pasted from a file)"),
        ("192.0.2.7\r\n,10.0.0.0/8", Ok("192.0.2.7,10.0.0.0/8"), "CRLF before a comma"),
        ("192.0.2.7 ,\t10.0.0.0/8", Ok("192.0.2.7,10.0.0.0/8"), "space and tab around the comma"),
        ("\x0c192.0.2.7", Ok("192.0.2.7"), "form feed is ASCII whitespace"),
        ("", Ok(""), "empty text means any address"),
        (" \t\r\n", Ok(""), "ASCII whitespace only means any address"),
        ("192.0.2.7\u{a0}", Err("Whitespace"), "trailing non-breaking space is not trimmed"),
        ("\u{a0}192.0.2.7", Err("Whitespace"), "leading non-breaking space"),
        ("\u{a0}", Err("Whitespace"), "a lone non-breaking space is not blank"),
        ("192.0.2.7,\u{a0}", Err("Whitespace"), "non-breaking space as an item"),
        ("\u{2003}192.0.2.7", Err("Whitespace"), "em space"),
        ("\u{3000}", Err("Whitespace"), "ideographic space is not blank"),
        ("192.0.2.7\x0b", Err("Whitespace"), "vertical tab is not ASCII whitespace for trimming"),
        ("\u{200b}192.0.2.7", Err("InvalidAddress"), "zero-width space"),
        ("\u{feff}192.0.2.7", Err("InvalidAddress"), "byte-order mark"),
        ("192.0.2.0 / 24", Err("Whitespace"), "spaces around the slash"),
        ("192.0.2.0/ 24", Err("Whitespace"), "space after the slash"),
        ("192.0.2.7 192.0.2.8", Err("Whitespace"), "space-separated list"),
        ("192.0.2.7\t192.0.2.8", Err("Whitespace"), "tab-separated list"),
        ("192.0.2.7;192.0.2.8", Err("InvalidAddress"), "semicolon-separated list"),
        ("0.0.0.0", Ok("0.0.0.0"), "unspecified IPv4 address"),
        ("255.255.255.255", Ok("255.255.255.255"), "broadcast address"),
        ("0.0.0.0/0", Ok("0.0.0.0/0"), "all of IPv4, explicitly"),
        ("::/0", Ok("::/0"), "all of IPv6, explicitly"),
        ("0.0.0.0/0,::/0", Ok("0.0.0.0/0,::/0"), "everything, explicitly (still not `any`)"),
        ("::", Ok("::"), "unspecified IPv6 address"),
        ("::1", Ok("::1"), "IPv6 loopback"),
        ("0:0:0:0:0:0:0:1", Ok("::1"), "uncompressed IPv6 is canonicalized"),
        ("2001:DB8::1", Ok("2001:db8::1"), "upper-case IPv6 is canonicalized"),
        ("192.0.2.7,192.0.2.7", Ok("192.0.2.7"), "duplicate removed"),
        ("192.0.2.7/32,192.0.2.7", Ok("192.0.2.7"), "duplicate in another spelling"),
        ("::ffff:192.0.2.7,192.0.2.7", Ok("192.0.2.7"), "IPv4-mapped duplicate of an IPv4 entry"),
        ("2001:db8::/32,2001:DB8:0::/32", Ok("2001:db8::/32"), "IPv6 duplicate in another spelling"),
        ("10.0.0.0/8,10.0.0.0/16", Ok("10.0.0.0/8,10.0.0.0/16"), "overlapping networks are kept, not merged"),
        ("::ffff:192.0.2.7", Ok("192.0.2.7"), "IPv4-mapped entry becomes IPv4"),
        ("::ffff:192.0.2.7/128", Ok("192.0.2.7"), "IPv4-mapped /128"),
        ("::ffff:192.0.2.0/120", Ok("192.0.2.0/24"), "IPv4-mapped network"),
        ("::ffff:0:0/96", Ok("0.0.0.0/0"), "the whole mapped range is all of IPv4"),
        ("::ffff:192.0.2.7/104", Err("HostBitsSet"), "mapped network with host bits set"),
        ("::192.0.2.7", Ok("::c000:207"), "IPv4-compatible stays IPv6"),
        ("2002:c000:207::/48", Ok("2002:c000:207::/48"), "6to4 network stays IPv6"),
        ("64:ff9b::/96", Ok("64:ff9b::/96"), "NAT64 prefix stays IPv6"),
        ("fe80::/10", Ok("fe80::/10"), "link-local network"),
        ("fe80::1%eth0", Err("ZoneId"), "link-local with an interface zone"),
        ("fe80::1%25eth0", Err("ZoneId"), "percent-encoded zone"),
        ("fe80::%1/64", Err("ZoneId"), "zone before the prefix"),
        ("::ffff:1.2.3.4%eth0", Err("ZoneId"), "zone on a mapped address"),
        ("[::1]", Err("Brackets"), "bracketed IPv6"),
        ("[2001:db8::1]:443", Err("Brackets"), "bracketed IPv6 with port"),
        ("192.0.2.7:443", Err("Port"), "IPv4 with port"),
        ("255.255.255.255:65535", Err("Port"), "broadcast with the highest port"),
        ("0.0.0.0:0", Err("Port"), "unspecified with port zero"),
        // "Has a port" is said only of a strict dotted quad followed by one
        // colon; anything else before the colon is not an address at all.
        ("example.com:443", Err("InvalidAddress"), "host name with port"),
        ("192.0.2.7:443:1", Err("InvalidAddress"), "two colons after a quad"),
        ("256.0.0.1:443", Err("InvalidAddress"), "octet over 255 with port"),
        ("1000.0.0.1:443", Err("InvalidAddress"), "four-digit octet with port"),
        ("01.2.3.4:443", Err("InvalidAddress"), "leading zero octet with port"),
        ("1.2.3.00:443", Err("InvalidAddress"), "double zero octet with port"),
        ("1a.2.3.4:443", Err("InvalidAddress"), "hex digit in an octet with port"),
        ("a.b.c.d:443", Err("InvalidAddress"), "letters with port"),
        ("x.1.2.3:443", Err("InvalidAddress"), "one letter octet with port"),
        ("1.2.3:443", Err("InvalidAddress"), "three octets with port"),
        ("1.2.3.4.5:443", Err("InvalidAddress"), "five octets with port"),
        (".1.2.3:443", Err("InvalidAddress"), "empty octet with port"),
        ("+1.2.3.4:443", Err("InvalidAddress"), "signed octet with port"),
        (&spaced_63, Err("Whitespace"), "63-byte entry is examined"),
        (&spaced_64, Err("Whitespace"), "64-byte entry is examined"),
        (&spaced_65, Err("InvalidAddress"), "65-byte entry is refused unexamined"),
        ("192.0.2.7/24", Err("HostBitsSet"), "host bits set"),
        ("192.0.2.7/0", Err("HostBitsSet"), "host bits set under /0"),
        ("10.0.0.0/1", Err("HostBitsSet"), "10/8 is not inside a /1 boundary"),
        ("192.0.2.0/33", Err("InvalidPrefix"), "prefix over 32"),
        ("::/129", Err("InvalidPrefix"), "prefix over 128"),
        ("::/256", Err("InvalidPrefix"), "prefix over a byte"),
        ("192.0.2.0/00", Err("InvalidPrefix"), "leading zero in the prefix"),
        ("0.0.0.0/00", Err("InvalidPrefix"), "`/00` is not `/0`"),
        ("192.0.2.0/-1", Err("InvalidPrefix"), "negative prefix"),
        ("192.0.2.0/+24", Err("InvalidPrefix"), "signed prefix"),
        ("192.0.2.0/0x18", Err("InvalidPrefix"), "hex prefix"),
        ("192.0.2.0/24/", Err("InvalidPrefix"), "trailing slash"),
        ("192.0.2.0/", Err("InvalidPrefix"), "empty prefix"),
        ("/24", Err("InvalidAddress"), "prefix without an address"),
        ("1.2.3", Err("InvalidAddress"), "three octets"),
        ("1.2.3.4.", Err("InvalidAddress"), "trailing dot"),
        (".1.2.3.4", Err("InvalidAddress"), "leading dot"),
        ("01.2.3.4", Err("InvalidAddress"), "leading zero octet"),
        ("0x7f.0.0.1", Err("InvalidAddress"), "hex octet"),
        ("2130706433", Err("InvalidAddress"), "IPv4 as one integer"),
        ("\u{ff11}.\u{ff12}.\u{ff13}.\u{ff14}", Err("InvalidAddress"), "full-width digits"),
        ("1.2.3.4\0", Err("InvalidAddress"), "trailing NUL"),
        ("*", Err("InvalidAddress"), "star is not `any`"),
        ("any", Err("InvalidAddress"), "the word any"),
        ("0/0", Err("InvalidAddress"), "shorthand /0"),
        ("localhost", Err("InvalidAddress"), "host name"),
        (&entry_65, Err("InvalidAddress"), "entry over 64 bytes"),
        ("192.0.2.7,,10.0.0.1", Err("EmptyEntry"), "empty item between entries"),
        ("192.0.2.7,", Err("EmptyEntry"), "trailing comma"),
        (",", Err("EmptyEntry"), "a lone comma"),
        (" , ", Err("EmptyEntry"), "a blank item"),
        (&too_long, Err("ListTooLong"), "over MAX_LIST_LEN"),
        (&list_max, Ok("192.0.2.7"), "exactly MAX_LIST_LEN bytes"),
        (&list_over, Err("ListTooLong"), "MAX_LIST_LEN + 1 bytes"),
    ];
    assert!(rows.len() >= 80, "table shrank: {}", rows.len());
    for (text, expected, why) in rows {
        let got = IpAllowList::parse(text);
        match (&got, expected) {
            (Ok(list), Ok(display)) => {
                assert_eq!(list.to_string(), display, "{why}: {text:?}");
                assert_eq!(list.is_any(), display.is_empty(), "{why}: is_any");
                assert_eq!(
                    IpAllowList::parse(display).as_ref(),
                    Ok(list),
                    "{why}: round trip"
                );
            }
            (Err(e), Err(k)) => {
                assert_eq!(e.as_str(), k, "{why}: {text:?} -> {e}");
                // Errors echo at most 64 characters of an entry.
                assert!(e.to_string().chars().count() < 200, "{why}: long message");
            }
            _ => panic!("{why}: {text:?}: got {got:?}, expected {expected:?}"),
        }
    }
}

/// The fixed list for the peer table.
const LIST: &str = "192.0.2.0/24, 198.51.100.7, ::ffff:203.0.113.5, 2001:db8:1::/48, fe80::/64";

#[test]
fn peer_address_table() {
    let list = IpAllowList::parse(LIST).unwrap();
    // A socket address with a zone (scope id): `IpAddr` carries no zone.
    let zoned_socket: SocketAddrV6 = "[fe80::1%3]:443".parse().unwrap();
    assert_eq!(zoned_socket.scope_id(), 3);
    let zoned = IpAddr::V6(*zoned_socket.ip());
    #[rustfmt::skip]
    let rows: Vec<(IpAddr, bool, &str)> = vec![
        (ip("192.0.2.0"), true, "first address of the /24"),
        (ip("192.0.2.255"), true, "last address of the /24"),
        (ip("192.0.1.255"), false, "one before the /24"),
        (ip("192.0.3.0"), false, "one after the /24"),
        (ip("::ffff:192.0.2.9"), true, "IPv4-mapped peer is canonicalized"),
        (ip("::ffff:c000:209"), true, "IPv4-mapped peer in hex spelling"),
        (ip("::192.0.2.9"), false, "IPv4-compatible peer stays IPv6"),
        (ip("2002:c000:209::"), false, "6to4 address embedding a listed IPv4"),
        (ip("2002:c000:209::1"), false, "6to4 host embedding a listed IPv4"),
        (ip("64:ff9b::c000:209"), false, "NAT64 address embedding a listed IPv4"),
        (ip("::ffff:0:c000:209"), false, "IPv4-translated (SIIT) address is not mapped"),
        (ip("198.51.100.7"), true, "single listed address"),
        (ip("198.51.100.6"), false, "neighbour below"),
        (ip("198.51.100.8"), false, "neighbour above"),
        (ip("::ffff:198.51.100.7"), true, "mapped form of a single address"),
        (ip("203.0.113.5"), true, "IPv4 peer against a mapped entry"),
        (ip("::ffff:203.0.113.5"), true, "mapped peer against a mapped entry"),
        (ip("::203.0.113.5"), false, "compatible peer against a mapped entry"),
        (ip("0.0.0.0"), false, "unspecified IPv4"),
        (ip("255.255.255.255"), false, "broadcast"),
        (ip("127.0.0.1"), false, "loopback"),
        (ip("::ffff:127.0.0.1"), false, "mapped loopback"),
        (ip("::"), false, "unspecified IPv6"),
        (ip("::1"), false, "IPv6 loopback"),
        (ip("::ffff:0.0.0.0"), false, "mapped unspecified"),
        (ip("2001:db8:1::"), true, "first address of the /48"),
        (ip("2001:db8:1:ffff:ffff:ffff:ffff:ffff"), true, "last address of the /48"),
        (ip("2001:db8:0:ffff:ffff:ffff:ffff:ffff"), false, "one before the /48"),
        (ip("2001:db8:2::"), false, "one after the /48"),
        (ip("2001:db8::1"), false, "same /32, other /48"),
        (ip("fe80::1"), true, "link-local inside fe80::/64"),
        (zoned, true, "link-local with a zone (scope id 3): the zone is not part of the address"),
        (ip("fe80:0:0:1::1"), false, "link-local outside fe80::/64"),
        (ip("fec0::1"), false, "site-local is not link-local"),
    ];
    for (peer, expected, why) in rows {
        assert_eq!(list.allows(peer), expected, "{why}: {peer}");
        assert_eq!(list.contains(peer), expected, "{why}: contains {peer}");
    }
}

#[test]
fn edge_lists_table() {
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, bool, &str)> = vec![
        // list, peer, allowed, why
        ("", "203.0.113.9", true, "empty list allows any IPv4"),
        ("", "2001:db8::9", true, "empty list allows any IPv6"),
        (" \t ", "::", true, "blank list allows the unspecified address"),
        ("0.0.0.0/0", "8.8.8.8", true, "0.0.0.0/0 admits IPv4"),
        ("0.0.0.0/0", "0.0.0.0", true, "0.0.0.0/0 admits 0.0.0.0"),
        ("0.0.0.0/0", "255.255.255.255", true, "0.0.0.0/0 admits broadcast"),
        ("0.0.0.0/0", "::ffff:8.8.8.8", true, "0.0.0.0/0 admits a mapped IPv4 peer"),
        ("0.0.0.0/0", "::8.8.8.8", false, "0.0.0.0/0 does not admit an IPv4-compatible peer"),
        ("0.0.0.0/0", "2001:db8::1", false, "0.0.0.0/0 does not admit IPv6"),
        ("::/0", "2001:db8::1", true, "::/0 admits IPv6"),
        ("::/0", "::", true, "::/0 admits ::"),
        ("::/0", "8.8.8.8", false, "::/0 does not admit IPv4"),
        ("::/0", "::ffff:8.8.8.8", false, "::/0 does not admit mapped IPv4"),
        ("::/0", "::8.8.8.8", true, "::/0 admits IPv4-compatible (it is IPv6)"),
        ("0.0.0.0/0,::/0", "8.8.8.8", true, "both /0 lists admit IPv4"),
        ("0.0.0.0/0,::/0", "2001:db8::1", true, "both /0 lists admit IPv6"),
        ("::ffff:0:0/96", "8.8.8.8", true, "mapped /96 is all of IPv4"),
        ("::ffff:0:0/96", "::ffff:8.8.8.8", true, "mapped /96 admits mapped peers"),
        ("::ffff:0:0/96", "::8.8.8.8", false, "mapped /96 does not admit compatible peers"),
        ("::/96", "::8.8.8.8", true, "::/96 admits IPv4-compatible peers"),
        ("::/96", "::ffff:8.8.8.8", false, "::/96 does not admit mapped peers (they are IPv4)"),
        ("::/80", "::ffff:8.8.8.8", false, "::/80 spans the mapped range but peers are compared as IPv4"),
        ("0.0.0.0/32", "0.0.0.0", true, "0.0.0.0/32 is exactly 0.0.0.0"),
        ("0.0.0.0/32", "0.0.0.1", false, "0.0.0.0/32 excludes its neighbour"),
        ("0.0.0.0/32", "::", false, "0.0.0.0 is not ::"),
        ("255.255.255.255/32", "255.255.255.255", true, "broadcast /32"),
        ("::/128", "::", true, "::/128 is exactly ::"),
        ("::/128", "0.0.0.0", false, ":: is not 0.0.0.0"),
        ("0.0.0.0/1", "127.255.255.255", true, "lower half, last"),
        ("0.0.0.0/1", "128.0.0.0", false, "lower half excludes the upper half"),
        ("128.0.0.0/1", "128.0.0.0", true, "upper half, first"),
        ("128.0.0.0/1", "255.255.255.255", true, "upper half, last"),
        ("128.0.0.0/1", "127.255.255.255", false, "upper half excludes the lower half"),
        ("10.0.0.0/31", "10.0.0.1", true, "/31 second address"),
        ("10.0.0.0/31", "10.0.0.2", false, "/31 third address"),
        ("10.0.0.0/31", "9.255.255.255", false, "/31 address before"),
        ("::/1", "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, "IPv6 lower half, last"),
        ("::/1", "8000::", false, "IPv6 lower half excludes the upper half"),
        ("8000::/1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, "IPv6 upper half, last"),
        ("2001:db8::/127", "2001:db8::1", true, "/127 second address"),
        ("2001:db8::/127", "2001:db8::2", false, "/127 third address"),
        ("192.0.2.7,192.0.2.7,192.0.2.7", "192.0.2.7", true, "duplicates do not change the answer"),
        ("192.0.2.7,192.0.2.7", "192.0.2.8", false, "duplicates do not widen"),
    ];
    for (list, peer, expected, why) in rows {
        let parsed = IpAllowList::parse(list).unwrap_or_else(|e| panic!("{why}: {list:?}: {e}"));
        assert_eq!(
            parsed.allows(ip(peer)),
            expected,
            "{why}: {list:?} vs {peer}"
        );
    }
}

fn s(v: &str) -> HeaderField<'_> {
    HeaderField::Single(v.as_bytes())
}

#[test]
fn client_ip_table() {
    use ForwardedError as E;
    let trusted =
        TrustedProxies::new(IpAllowList::parse("10.0.0.0/8, 2001:db8:ffff::/48").unwrap());
    let xff_only = trusted.clone().with_header(ProxyHeader::XForwardedFor);
    let fwd_only = trusted.clone().with_header(ProxyHeader::Forwarded);
    let nobody = TrustedProxies::none();
    let too_long = "1.2.3.4, ".repeat(1000);
    // Exactly MAX_FORWARDED_LEN bytes is parsed; one byte more is refused.
    let pad = |text: &str, len: usize| format!("{text}{}", " ".repeat(len - text.len()));
    let xff_max = pad("1.2.3.4", MAX_FORWARDED_LEN);
    let xff_over = pad("1.2.3.4", MAX_FORWARDED_LEN + 1);
    let fwd_max = pad("for=1.2.3.4", MAX_FORWARDED_LEN);
    let fwd_over = pad("for=1.2.3.4", MAX_FORWARDED_LEN + 1);
    #[rustfmt::skip]
    let rows: Vec<(&str, &TrustedProxies, HeaderField<'_>, HeaderField<'_>, Result<&str, ForwardedError>, &str)> = vec![
        // peer, trust, X-Forwarded-For, Forwarded, client, why
        // An untrusted peer's headers are never believed.
        ("203.0.113.9", &trusted, s("10.0.0.5"), Absent, Ok("203.0.113.9"), "spoofed XFF naming a trusted proxy from an untrusted peer"),
        ("203.0.113.9", &trusted, s("1.2.3.4"), Absent, Ok("203.0.113.9"), "spoofed XFF from an untrusted peer"),
        ("203.0.113.9", &trusted, Absent, s("for=1.2.3.4"), Ok("203.0.113.9"), "spoofed Forwarded from an untrusted peer"),
        ("203.0.113.9", &trusted, s("garbage"), s("for=\"junk"), Ok("203.0.113.9"), "garbage from an untrusted peer is ignored, not an error"),
        ("203.0.113.9", &trusted, s("1.2.3.4"), s("for=5.6.7.8"), Ok("203.0.113.9"), "both headers from an untrusted peer"),
        ("203.0.113.9", &trusted, Repeated, Repeated, Ok("203.0.113.9"), "repeated headers from an untrusted peer"),
        ("::ffff:203.0.113.9", &trusted, s("1.2.3.4"), Absent, Ok("203.0.113.9"), "mapped untrusted peer is canonicalized"),
        ("::10.0.0.1", &trusted, s("1.2.3.4"), Absent, Ok("::a00:1"), "IPv4-compatible spelling of a proxy is not the proxy"),
        ("2002:a00:1::", &trusted, s("1.2.3.4"), Absent, Ok("2002:a00:1::"), "6to4 spelling of a proxy is not the proxy"),
        ("10.0.0.1", &nobody, s("1.2.3.4"), Absent, Ok("10.0.0.1"), "an empty trust list trusts nobody"),
        // A trusted proxy: walk right to left.
        ("10.0.0.1", &trusted, s("1.2.3.4"), Absent, Ok("1.2.3.4"), "one hop"),
        ("::ffff:10.0.0.1", &trusted, s("1.2.3.4"), Absent, Ok("1.2.3.4"), "mapped spelling of a trusted proxy"),
        ("10.0.0.1", &trusted, s("1.2.3.4, 10.0.0.2, 10.0.0.3"), Absent, Ok("1.2.3.4"), "chain of trusted proxies"),
        ("10.0.0.1", &trusted, s("6.6.6.6, 1.2.3.4, 10.0.0.2"), Absent, Ok("1.2.3.4"), "client-written leftmost hop is not believed"),
        ("10.0.0.1", &trusted, s("10.9.9.9, 6.6.6.6"), Absent, Ok("6.6.6.6"), "client claiming to be behind a trusted proxy"),
        ("10.0.0.1", &trusted, s("10.0.0.7"), Absent, Ok("10.0.0.7"), "every hop trusted: leftmost"),
        ("10.0.0.1", &trusted, s("::ffff:10.0.0.9, 1.2.3.4"), Absent, Ok("1.2.3.4"), "mapped hop recognized as a trusted proxy"),
        ("2001:db8:ffff::1", &trusted, s("::ffff:10.0.0.3, 2001:db8::9"), Absent, Ok("2001:db8::9"), "IPv6 proxy, IPv6 client"),
        ("10.0.0.1", &trusted, s("1.2.3.4 , 5.6.7.8"), Absent, Ok("5.6.7.8"), "optional whitespace around commas"),
        ("10.0.0.1", &trusted, s("\t1.2.3.4"), Absent, Ok("1.2.3.4"), "leading tab"),
        ("10.0.0.1", &trusted, s("1.2.3.4:0"), Absent, Ok("1.2.3.4"), "port zero after an address"),
        ("10.0.0.1", &trusted, s("[2001:db8::9]:443"), Absent, Ok("2001:db8::9"), "bracketed IPv6 with port"),
        ("10.0.0.1", &trusted, s("::ffff:6.6.6.6"), Absent, Ok("6.6.6.6"), "mapped client canonicalized"),
        ("10.0.0.1", &trusted, s("0.0.0.0"), Absent, Ok("0.0.0.0"), "unspecified client address is an address"),
        ("10.0.0.1", &trusted, s("255.255.255.255"), Absent, Ok("255.255.255.255"), "broadcast client address is an address"),
        ("10.0.0.1", &trusted, Absent, Absent, Ok("10.0.0.1"), "no header: the proxy itself"),
        // Garbage from a trusted proxy fails closed.
        ("10.0.0.1", &trusted, s("garbage"), Absent, Err(E::InvalidAddress), "host name"),
        ("10.0.0.1", &trusted, s("garbage, 1.2.3.4"), Absent, Err(E::InvalidAddress), "garbage left of a good hop is still refused"),
        ("10.0.0.1", &trusted, s("1.2.3.4;5.6.7.8"), Absent, Err(E::InvalidAddress), "semicolon inside an element"),
        ("10.0.0.1", &trusted, s("1.2.3.4\r\n"), Absent, Err(E::Malformed), "CRLF"),
        ("10.0.0.1", &trusted, s("1.2.3.4\0"), Absent, Err(E::Malformed), "NUL"),
        ("10.0.0.1", &trusted, s("1.2.3.4\u{a0}"), Absent, Err(E::Malformed), "non-breaking space"),
        ("10.0.0.1", &trusted, s("1.2.3.4, unknown"), Absent, Err(E::UnknownNode), "unknown hop"),
        ("10.0.0.1", &trusted, s("UNKNOWN"), Absent, Err(E::UnknownNode), "unknown in upper case"),
        ("10.0.0.1", &trusted, s("_proxy1"), Absent, Err(E::ObfuscatedNode), "obfuscated hop"),
        ("10.0.0.1", &trusted, s("[1.2.3.4]"), Absent, Err(E::InvalidAddress), "bracketed IPv4"),
        ("10.0.0.1", &trusted, s("1.2.3.4:"), Absent, Err(E::Malformed), "empty port"),
        ("10.0.0.1", &trusted, s("1.2.3.4:65536"), Absent, Err(E::Malformed), "port out of range"),
        ("10.0.0.1", &trusted, s("fe80::1%eth0"), Absent, Err(E::InvalidAddress), "zone id"),
        ("10.0.0.1", &trusted, s("01.2.3.4"), Absent, Err(E::InvalidAddress), "leading zero octet"),
        ("10.0.0.1", &trusted, s("   "), Absent, Err(E::EmptyElement), "blank value"),
        ("10.0.0.1", &trusted, s(","), Absent, Err(E::EmptyElement), "lone comma"),
        ("10.0.0.1", &trusted, s("1.2.3.4,,5.6.7.8"), Absent, Err(E::EmptyElement), "empty element"),
        ("10.0.0.1", &trusted, s(&too_long), Absent, Err(E::TooLong), "over MAX_FORWARDED_LEN"),
        ("10.0.0.1", &trusted, Repeated, Absent, Err(E::Repeated), "repeated XFF"),
        ("10.0.0.1", &trusted, s(&xff_max), Absent, Ok("1.2.3.4"), "XFF of exactly MAX_FORWARDED_LEN bytes"),
        ("10.0.0.1", &trusted, s(&xff_over), Absent, Err(E::TooLong), "XFF of MAX_FORWARDED_LEN + 1 bytes"),
        ("10.0.0.1", &trusted, s("1.2.3.4:_a-b.c_9"), Absent, Ok("1.2.3.4"), "obfuscated port"),
        ("10.0.0.1", &trusted, s("[2001:db8::9]:_x"), Absent, Ok("2001:db8::9"), "bracketed IPv6 with an obfuscated port"),
        ("10.0.0.1", &trusted, s("1.2.3.4:_"), Absent, Err(E::Malformed), "obfuscated port with no identifier"),
        ("10.0.0.1", &trusted, s("[2001:db8::9]:_"), Absent, Err(E::Malformed), "bracketed IPv6, empty obfuscated port"),
        ("10.0.0.1", &trusted, s("1.2.3.4:_a!b"), Absent, Err(E::Malformed), "obfuscated port with a character outside its alphabet"),
        // Forwarded.
        ("10.0.0.1", &trusted, Absent, s("for=1.2.3.4"), Ok("1.2.3.4"), "Forwarded, one hop"),
        ("10.0.0.1", &trusted, Absent, s("for=\"[::ffff:1.2.3.4]\""), Ok("1.2.3.4"), "Forwarded mapped IPv6, canonicalized"),
        ("10.0.0.1", &trusted, Absent, s("for=\"10.0.0.9\", for=1.2.3.4"), Ok("1.2.3.4"), "Forwarded chain"),
        ("10.0.0.1", &trusted, Absent, s("for=6.6.6.6;for=1.2.3.4"), Err(E::Malformed), "two for= in one element"),
        ("10.0.0.1", &trusted, Absent, s("for=\"1.2.3.4,5.6.7.8\""), Err(E::InvalidAddress), "comma inside a quoted value"),
        ("10.0.0.1", &trusted, Absent, s("by=10.0.0.1"), Err(E::MissingFor), "element without for="),
        ("10.0.0.1", &trusted, Absent, Repeated, Err(E::Repeated), "repeated Forwarded"),
        ("10.0.0.1", &trusted, Absent, s(&fwd_max), Ok("1.2.3.4"), "Forwarded of exactly MAX_FORWARDED_LEN bytes"),
        ("10.0.0.1", &trusted, Absent, s(&fwd_over), Err(E::TooLong), "Forwarded of MAX_FORWARDED_LEN + 1 bytes"),
        ("10.0.0.1", &trusted, Absent, s("for:1.2.3.4"), Err(E::Malformed), "colon instead of ="),
        ("10.0.0.1", &trusted, Absent, s("for"), Err(E::Malformed), "parameter name without a value"),
        ("10.0.0.1", &trusted, Absent, s("=1.2.3.4"), Err(E::Malformed), "value without a parameter name"),
        ("10.0.0.1", &trusted, Absent, s("for=1.2.3.4;=x"), Err(E::Malformed), "nameless second pair"),
        ("10.0.0.1", &trusted, Absent, s("for=\"1.2.3.4:_\""), Err(E::Malformed), "empty obfuscated port"),
        ("10.0.0.1", &trusted, Absent, s("for=\"1.2.3.4:_x-1\""), Ok("1.2.3.4"), "obfuscated port"),
        // Both headers.
        ("10.0.0.1", &trusted, s("1.2.3.4"), s("for=5.6.7.8"), Err(E::Ambiguous), "both headers from a trusted proxy under Auto"),
        ("10.0.0.1", &trusted, Repeated, s("for=5.6.7.8"), Err(E::Ambiguous), "repeated XFF next to Forwarded"),
        ("10.0.0.1", &xff_only, s("1.2.3.4"), s("for=5.6.7.8"), Ok("1.2.3.4"), "XFF pinned: Forwarded ignored"),
        ("10.0.0.1", &xff_only, s("1.2.3.4"), s("for=\"junk"), Ok("1.2.3.4"), "XFF pinned: garbage Forwarded ignored"),
        ("10.0.0.1", &xff_only, Absent, s("for=5.6.7.8"), Ok("10.0.0.1"), "XFF pinned and absent: the proxy"),
        ("10.0.0.1", &fwd_only, s("1.2.3.4"), s("for=5.6.7.8"), Ok("5.6.7.8"), "Forwarded pinned: XFF ignored"),
        ("10.0.0.1", &fwd_only, Repeated, s("for=5.6.7.8"), Ok("5.6.7.8"), "Forwarded pinned: repeated XFF ignored"),
    ];
    for (peer, trust, xff, fwd, expected, why) in rows {
        let got = client_ip(ip(peer), xff, fwd, trust);
        assert_eq!(
            got,
            expected.map(ip),
            "{why}: peer={peer} xff={xff:?} fwd={fwd:?}"
        );
    }
}

/// End to end: a key with an IP list, a peer derived through `client_ip`;
/// a spoofed header from an untrusted peer does not unlock the key.
#[test]
fn spoofed_forwarding_does_not_unlock_an_ip_restricted_key() {
    let keys = KeyManager::new(MemoryKeyStore::new());
    let token = keys
        .create(
            &Actor::system(),
            NewKey::secret(OwnerId::new("acct_ip").unwrap(), "server")
                .allowed_ips(IpAllowList::parse("198.51.100.7").unwrap()),
        )
        .unwrap()
        .token;
    let trusted = TrustedProxies::new(IpAllowList::parse("10.0.0.0/8").unwrap());
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Option<Rejection>, &str)> = vec![
        ("203.0.113.9", "198.51.100.7", Some(Rejection::IpNotAllowed), "untrusted peer claims the listed address"),
        ("10.0.0.1", "198.51.100.7", None, "trusted proxy reports the listed client"),
        ("10.0.0.1", "198.51.100.7, 10.0.0.2", None, "two trusted proxies"),
        ("10.0.0.1", "198.51.100.7, 6.6.6.6", Some(Rejection::IpNotAllowed), "listed address written left of the real client"),
        ("10.0.0.1", "::ffff:198.51.100.7", None, "mapped client"),
        ("::ffff:198.51.100.7", "6.6.6.6", None, "direct mapped peer, header ignored"),
    ];
    for (peer, xff, want, why) in rows {
        let client = client_ip(ip(peer), s(xff), Absent, &trusted).unwrap();
        let got = keys.verify(
            token.expose_secret(),
            &RequestContext::new().peer_ip(client),
        );
        assert_eq!(got.err().and_then(|e| e.rejection()), want, "{why}");
    }
    // No peer address at all: a key with an IP list is refused.
    let got = keys.verify(token.expose_secret(), &RequestContext::new());
    assert_eq!(
        got.err().and_then(|e| e.rejection()),
        Some(Rejection::IpNotAllowed)
    );
}

/// `IpNet::contains`, `IpAllowList::contains` and `TrustedProxies::is_trusted`
/// answer "no" as well as "yes": outside the range, the other address family,
/// and (for the list forms) an empty list, which contains nothing.
#[test]
fn contains_table() {
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, bool, &str)> = vec![
        // network, address, contained, why
        ("10.0.0.0/8", "10.0.0.0", true, "first address"),
        ("10.0.0.0/8", "10.255.255.255", true, "last address"),
        ("10.0.0.0/8", "::ffff:10.1.2.3", true, "IPv4-mapped address is canonicalized"),
        ("10.0.0.0/8", "11.0.0.0", false, "one past the end"),
        ("10.0.0.0/8", "9.255.255.255", false, "one before the start"),
        ("10.0.0.0/8", "::a00:1", false, "IPv4-compatible address is IPv6"),
        ("192.0.2.7", "192.0.2.7", true, "single address"),
        ("192.0.2.7", "192.0.2.6", false, "neighbour of a single address"),
        ("0.0.0.0/0", "203.0.113.9", true, "all of IPv4"),
        ("0.0.0.0/0", "2001:db8::1", false, "all of IPv4 is no IPv6"),
        ("::/0", "2001:db8::1", true, "all of IPv6"),
        ("::/0", "203.0.113.9", false, "all of IPv6 is no IPv4"),
        ("::/0", "::ffff:203.0.113.9", false, "all of IPv6 is no mapped IPv4"),
        ("2001:db8::/32", "2001:db8:ffff::1", true, "inside an IPv6 network"),
        ("2001:db8::/32", "2001:db9::", false, "one past an IPv6 network"),
        ("::1", "::1", true, "IPv6 single address"),
        ("::1", "::2", false, "neighbour of an IPv6 single address"),
    ];
    for (net, addr, expected, why) in rows {
        let parsed: IpNet = net.parse().unwrap();
        let addr = ip(addr);
        assert_eq!(
            parsed.contains(addr),
            expected,
            "{why}: {net} contains {addr}"
        );
        let list = IpAllowList::from_nets([parsed]);
        assert_eq!(
            list.contains(addr),
            expected,
            "{why}: list {net} contains {addr}"
        );
        let proxies = TrustedProxies::new(list);
        assert_eq!(
            proxies.is_trusted(addr),
            expected,
            "{why}: proxy {net} trusts {addr}"
        );
    }
    // An empty list contains nothing and trusts nobody, though it allows all.
    for addr in ["203.0.113.9", "2001:db8::1", "::"] {
        let addr = ip(addr);
        assert!(!IpAllowList::default().contains(addr), "{addr}");
        assert!(IpAllowList::default().allows(addr), "{addr}");
        assert!(!TrustedProxies::none().is_trusted(addr), "{addr}");
    }
}

/// Lists built from networks or parsed with `str::parse` are the lists the
/// text describes: same networks, in order, duplicates removed, enforced.
#[test]
fn from_nets_nets_and_from_str() {
    let nets: Vec<IpNet> = [
        "2001:db8::/32",
        "192.0.2.0/24",
        "::ffff:192.0.2.0/120",
        "10.0.0.1",
    ]
    .iter()
    .map(|n| n.parse().unwrap())
    .collect();
    let list = IpAllowList::from_nets(nets.clone());
    let shown: Vec<String> = list.nets().iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["2001:db8::/32", "192.0.2.0/24", "10.0.0.1"]);
    assert_eq!(list.nets()[0].prefix_len(), 32);
    assert_eq!(list.nets()[2].addr(), ip("10.0.0.1"));
    assert!(!list.is_any());
    assert!(list.allows(ip("192.0.2.9")));
    assert!(list.allows(ip("10.0.0.1")));
    assert!(!list.allows(ip("10.0.0.2")));
    assert!(!list.allows(ip("203.0.113.9")));
    assert!(IpAllowList::from_nets([]).is_any());

    let text = "2001:db8::/32, 192.0.2.0/24, ::ffff:192.0.2.0/120, 10.0.0.1";
    let parsed: IpAllowList = text.parse().unwrap();
    assert_eq!(parsed, list);
    assert_eq!(parsed, IpAllowList::parse(text).unwrap());
    assert_eq!(parsed.nets(), list.nets());
    for (bad, kind) in [
        ("10.0.0.1/8", "HostBitsSet"),
        ("1.2.3.4,", "EmptyEntry"),
        ("1.2.3.4:80", "Port"),
    ] {
        let err = bad.parse::<IpAllowList>().unwrap_err();
        assert_eq!(err.as_str(), kind, "{bad}");
        assert_eq!(IpAllowList::parse(bad), Err(err), "{bad}");
    }
    assert!("".parse::<IpAllowList>().unwrap().is_any());
}

/// `TrustedProxies` reports what it was built with.
#[test]
fn trusted_proxies_accessors() {
    let list = IpAllowList::parse("10.0.0.0/8, 2001:db8:ffff::/48").unwrap();
    let trusted = TrustedProxies::new(list.clone());
    assert_eq!(trusted.proxies(), &list);
    assert_eq!(trusted.header(), ProxyHeader::Auto);
    let pinned = trusted.with_header(ProxyHeader::Forwarded);
    assert_eq!(pinned.header(), ProxyHeader::Forwarded);
    assert_eq!(pinned.proxies(), &list);
    let none = TrustedProxies::none();
    assert!(none.proxies().is_any());
    assert_eq!(none.header(), ProxyHeader::Auto);
}

/// Every forwarding-header error is a client error: 400, never a 5xx and
/// never 401 (the key was not even looked at).
#[test]
fn forwarded_errors_are_400() {
    use ForwardedError as E;
    for err in [
        E::Repeated,
        E::TooLong,
        E::Malformed,
        E::EmptyElement,
        E::InvalidAddress,
        E::UnknownNode,
        E::ObfuscatedNode,
        E::MissingFor,
        E::Ambiguous,
    ] {
        assert_eq!(err.http_status(), 400, "{err:?}");
    }
}
