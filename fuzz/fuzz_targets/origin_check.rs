//! Origin/Referer decision: never panics; an accepted Origin is the
//! canonical serialization of an allowed exact entry (differential oracle).
#![no_main]
use api_keys::{DomainAllowList, HeaderField};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let list = DomainAllowList::new(["example.com", "shop.example.org", "*.apps.example.net"]).unwrap();
    // Split the input into (mode, origin, referer).
    let (mode, rest) = data.split_first().map_or((0, &[][..]), |(m, r)| (*m, r));
    let cut = rest.iter().position(|b| *b == 0xFF).unwrap_or(rest.len());
    let (origin, referer) = rest.split_at(cut);
    let referer = referer.get(1..).unwrap_or(&[]);
    fn field(bits: u8, v: &[u8]) -> HeaderField<'_> {
        match bits & 3 {
            0 => HeaderField::Absent,
            1 | 2 => HeaderField::Single(v),
            _ => HeaderField::Repeated,
        }
    }
    let o = field(mode, origin);
    let r = field(mode >> 2, referer);
    let allow_http = mode & 0x10 != 0;
    if list.check(o, r, allow_http).is_ok() {
        if let HeaderField::Single(origin) = o {
            let text = std::str::from_utf8(origin).expect("accepted origin is ASCII").to_ascii_lowercase();
            let (scheme, rest) = text.split_once("://").expect("scheme");
            assert!(scheme == "https" || (allow_http && scheme == "http"));
            let host = rest.rsplit_once(':').map_or(rest, |(h, port)| {
                assert!(port.bytes().all(|b| b.is_ascii_digit()) && !port.starts_with('0'));
                h
            });
            assert!(
                host == "example.com"
                    || host == "shop.example.org"
                    || (host.ends_with(".apps.example.net") && host.len() > ".apps.example.net".len()),
                "accepted {text}"
            );
        } else {
            // Accepted through Referer: Origin must have been absent.
            assert!(matches!(o, HeaderField::Absent));
        }
    }
});
