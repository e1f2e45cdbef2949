//! The HTTP client every daemon command shares (`submit`, `status`, `jobs`,
//! `cancel`, `follow`, `fetch`, `schedules`, `campaign`, `clean`: one file each). It
//! finds the daemon and its token through the data directory and says how to
//! start the daemon when none answers. HTTP is spoken over a plain
//! `TcpStream` (one request per connection) to keep the binary lean.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

use super::serve::DaemonArgs;

pub struct Client {
    addr: SocketAddr,
    token: String,
    data_dir: PathBuf,
}

impl Client {
    pub fn connect(args: &DaemonArgs) -> anyhow::Result<Client> {
        let config = args.load()?;
        let data_dir = config.data_dir.clone();
        let addr = std::fs::read_to_string(crate::daemon::address_path(&data_dir))
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v["listen"].as_str().and_then(|a| a.parse().ok()))
            .unwrap_or(config.http.listen);
        let token = std::fs::read_to_string(crate::daemon::token_path(&data_dir))
            .map(|t| t.trim().to_owned())
            .map_err(|_| {
                anyhow!(
                    "no token at {}: is the daemon running with this data dir? Start it with `batchd serve --data-dir {}`",
                    crate::daemon::token_path(&data_dir).display(),
                    data_dir.display()
                )
            })?;
        Ok(Client { addr, token, data_dir })
    }

    /// Connects and sends one request (`extra` are more header lines, each ending in CRLF).
    fn send(&self, method: &str, path: &str, body: Option<&Value>, extra: &str) -> anyhow::Result<TcpStream> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(3)).map_err(|e| {
            anyhow!(
                "the daemon is not running at {} ({e}); start it with `batchd serve --data-dir {}`",
                self.addr,
                self.data_dir.display()
            )
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nX-Batchd-Trigger: cli\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            self.addr,
            self.token,
            body.len()
        );
        stream.write_all(req.as_bytes()).context("sending the request")?;
        Ok(stream)
    }

    /// A GET whose body is read as it arrives (never held whole in memory),
    /// with more request header lines in `extra`: the status, the response
    /// headers (names in lower case) and the body, `Content-Length` bytes.
    pub fn get_stream(&self, path: &str, extra: &str) -> anyhow::Result<(u16, Vec<(String, String)>, impl Read)> {
        let stream = self.send("GET", path, None, extra)?;
        let mut r = std::io::BufReader::with_capacity(1 << 20, stream);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut r, &mut line).context("reading the response")?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("malformed status line"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            std::io::BufRead::read_line(&mut r, &mut line).context("reading the response")?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let len: u64 = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        Ok((status, headers, r.take(len)))
    }

    /// One request; returns the status and the JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let mut stream = self.send(method, path, body, "")?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).context("reading the response")?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| anyhow!("malformed response from the daemon"))?;
        let head = String::from_utf8_lossy(&raw[..split]);
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("malformed status line"))?;
        let chunked = head
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
        let mut payload = raw[split + 4..].to_vec();
        if chunked {
            payload = dechunk(&payload);
        }
        let v = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// Like `call`, but a non-2xx answer becomes an error with the daemon's message.
    pub fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, v) = self.call(method, path, body)?;
        if !(200..300).contains(&status) {
            let code = v["error"]["code"].as_str().unwrap_or("HTTP_ERROR");
            let msg = v["error"]["message"].as_str().unwrap_or("");
            bail!("{code}: {msg} (HTTP {status})");
        }
        Ok(v)
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || eol + 2 + size > b.len() {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}
