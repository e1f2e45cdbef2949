//! Abuse of the API with the real daemon over real HTTP: 10,000 mutated tokens
//! are all refused, an oversized body is refused with 413 before it is read, and
//! 200 slow clients (slowloris) do not stop others being served.

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

/// Slowloris: 200 clients hold connections open, 100 trickling a request head
/// a byte at a time and 100 trickling a 100 KB body, for as long as the test
/// runs. Meanwhile an ordinary client is served: 60 requests (health, lists,
/// a job created and run to COMPLETED) all answer. tiny_http reads each
/// connection's head on a thread of its own, and a large body is read on a
/// thread of its own (see `Api::dispatch`), so neither kind holds the pool.
#[test]
fn two_hundred_slow_clients_do_not_stop_others_being_served() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let env = crate::helper::Env::new();
    let d = Daemon::start();
    let addr = d.addr();
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(addr).unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\n").unwrap();
        } else {
            write!(
                s,
                "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{",
                d.token()
            )
            .unwrap();
        }
        slow.push(s);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut sent, mut rounds) = (0u64, 0u64);
            while !stop.load(Ordering::SeqCst) {
                rounds += 1;
                for (i, s) in slow.iter_mut().enumerate() {
                    // Head senders add header lines that never end; body senders
                    // add spaces that never complete the JSON.
                    let byte: &[u8] = if i % 2 == 0 { b"X" } else { b" " };
                    if s.write_all(byte).is_ok() {
                        sent += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (slow, sent, rounds)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut worst = Duration::ZERO;
    // Spread over about six seconds, so the slow clients keep at it throughout.
    let mut timed = |f: &mut dyn FnMut()| {
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        f();
        worst = worst.max(t.elapsed());
    };
    for _ in 0..20 {
        timed(&mut || assert_eq!(crate::helper::daemon::http(addr, None, "GET", "/healthz", None, &[]).status, 200));
        timed(&mut || assert_eq!(d.get("/v1/jobs").status, 200));
    }
    let src = env.archive("zip", "a.zip", &crate::helper::numbered(30, 100));
    let staged = d.stage(&src);
    let mut id = String::new();
    timed(&mut || id = d.create(&serde_json::json!({"sources": [staged], "batch_size": 10})));
    let job = d.wait_job(&id, Duration::from_secs(60));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    for _ in 0..19 {
        timed(&mut || assert_eq!(d.get(&format!("/v1/jobs/{id}")).status, 200));
    }
    stop.store(true, Ordering::SeqCst);
    let (slow, sent, rounds) = trickle.join().unwrap();
    // Every slow client stayed connected and kept sending throughout (a write
    // to a connection the server had closed fails from the second on).
    assert!(rounds >= 20, "only {rounds} rounds of trickling");
    assert!(sent >= 200 * (rounds - 1), "the slow clients sent {sent} bytes in {rounds} rounds");
    drop(slow);
    eprintln!(
        "slowloris: 200 slow clients held for {rounds} rounds ({sent} bytes trickled); 60 ordinary requests served, slowest {worst:?}"
    );
}
