//! Abuse of the API with the real daemon over real HTTP: 10,000 mutated tokens
//! are all refused, and an oversized body is refused with 413 before it is read.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::helper::daemon::{Api, Daemon};

/// One request on a fresh connection; returns the status code.
fn status_with(addr: std::net::SocketAddr, authorization: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

#[test]
fn ten_thousand_mutated_tokens_are_all_refused() {
    let d = Daemon::start();
    let token = d.token();
    assert_eq!(status_with(d.addr(), &format!("Bearer {token}")), 200, "the real token works");
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    const ALPHABET: &[u8] = b"0123456789abcdefABCDEF-_=+/.~!xyz";
    let (mut refused, mut kinds) = (0, std::collections::BTreeMap::<&str, usize>::new());
    for _ in 0..10_000 {
        let mut t = token.clone().into_bytes();
        let kind = match next(8) {
            0 => {
                let i = next(t.len());
                let c = ALPHABET[next(ALPHABET.len())];
                t[i] = if t[i] == c { b'Z' } else { c };
                "one byte changed"
            }
            1 => {
                t.remove(next(t.len()));
                "one byte removed"
            }
            2 => {
                t.insert(next(t.len() + 1), ALPHABET[next(ALPHABET.len())]);
                "one byte inserted"
            }
            3 => {
                t.truncate(next(t.len()));
                "truncated"
            }
            4 => {
                t = t.to_ascii_uppercase();
                "upper case"
            }
            5 => {
                let (a, b) = (next(t.len()), next(t.len()));
                t.swap(a, b);
                if t == token.as_bytes() {
                    t[0] ^= 1;
                }
                "two bytes swapped"
            }
            6 => {
                let n = next(t.len()) + 1;
                t.extend_from_slice(&token.as_bytes()[..n]);
                "extended"
            }
            _ => {
                t = (0..next(80) + 1).map(|_| ALPHABET[next(ALPHABET.len())]).collect();
                "random"
            }
        };
        let t = String::from_utf8(t).unwrap();
        assert_ne!(t, token);
        let scheme = ["Bearer ", "bearer ", "Bearer  ", "Basic ", ""][next(5)];
        let code = status_with(d.addr(), &format!("{scheme}{t}"));
        assert_eq!(code, 401, "{kind}: {scheme}{t:?} got {code}");
        refused += 1;
        *kinds.entry(kind).or_default() += 1;
    }
    assert_eq!(refused, 10_000);
    eprintln!("10,000 mutated tokens refused: {kinds:?}");
    // A wrong scheme with the right token, and the token twice, are refused too.
    assert_eq!(status_with(d.addr(), &format!("Basic {token}")), 401);
    assert_eq!(status_with(d.addr(), &format!("Bearer {token}{token}")), 401);
    assert_eq!(
        status_with(d.addr(), &format!("Bearer {token}")),
        200,
        "and the real token still works"
    );
}

#[test]
fn an_oversized_body_is_refused_before_it_is_sent() {
    let d = Daemon::start();
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    // Announce 1 GiB and send none of it: the answer must not wait for the body.
    write!(
        s,
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n",
        d.token()
    )
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("PAYLOAD_TOO_LARGE") || text.contains("413"), "{text}");
    eprintln!("413 for a 1 GiB Content-Length after {took:?} (nothing of the body sent)");
}
