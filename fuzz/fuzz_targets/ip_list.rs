//! IP allow-list parsing and matching, and client IP derivation: never
//! panics; a parsed list round-trips through its display form.
#![no_main]
use api_keys::ip::{IpAllowList, TrustedProxies, client_ip};
use api_keys::HeaderField;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv6Addr};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(list) = IpAllowList::parse(&text) {
        let again = IpAllowList::parse(&list.to_string()).expect("display re-parses");
        assert_eq!(again, list);
        // Matching any address derived from the input never panics, and a
        // blank list allows everything.
        let mut octets = [0u8; 16];
        for (o, b) in octets.iter_mut().zip(data.iter()) {
            *o = *b;
        }
        let v6 = IpAddr::V6(Ipv6Addr::from(octets));
        let allowed = list.allows(v6);
        if list.is_any() {
            assert!(allowed);
        }
        let _ = list.allows(v6.to_canonical());
    }
    let trusted = TrustedProxies::new(IpAllowList::parse("10.0.0.0/8, fd00::/8").unwrap());
    let peer: IpAddr = "10.1.2.3".parse().unwrap();
    let cut = data.iter().position(|b| *b == 0xFF).unwrap_or(data.len());
    let (xff, fwd) = data.split_at(cut);
    for (a, b) in [
        (HeaderField::Single(xff), HeaderField::Absent),
        (HeaderField::Absent, HeaderField::Single(fwd)),
        (HeaderField::Single(xff), HeaderField::Single(fwd)),
    ] {
        if let Ok(ip) = client_ip(peer, a, b, &trusted) {
            assert_eq!(ip, ip.to_canonical());
        }
    }
});
