//! etcd (v3 API) as the mesh's shared store: several control planes on one etcd serve
//! one mesh. Each key under `/outrigger/mesh/` (the root is `--etcd-prefix`) holds what
//! a file of `--dir` would (one or more Istio resources, YAML), and its key names it in
//! errors; a user writes them with `etcdctl put KEY "$(cat file.yaml)"`. Registered
//! workloads are kept under `/outrigger/registry/NAMESPACE/NAME`, each under an etcd
//! lease of its TTL, so that every replica sees them and etcd expires them.
//!
//! The client speaks etcd's JSON gateway (`/v3/kv/range`, `/v3/watch`; keys and values
//! in base64) over plain HTTP/1.1 on blocking sockets, each call on a thread of its own
//! (`rt::blocking`): the executor never blocks, and no gRPC stack is added for a store
//! the control plane reads a few times per change. A watch on the prefix wakes the
//! control plane on any change; it then reads the whole prefix again, as it reads the
//! whole directory, so that a half-seen change is never applied.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest response read (the whole mesh's resources).
const MAX_RESPONSE: usize = 256 << 20;
/// The root of the keys: resources under `ROOTmesh/`, registrations under
/// `ROOTregistry/`.
pub const DEFAULT_PREFIX: &str = "/outrigger/";

#[derive(Clone, Debug)]
pub struct Etcd {
    pub addr: SocketAddr,
    pub prefix: String,
}

impl Etcd {
    /// `http://IP:PORT` (etcd's client URL).
    pub fn new(url: &str, prefix: &str) -> Result<Etcd, String> {
        let hostport = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--etcd: `{url}` is not http://IP:PORT"))?
            .trim_end_matches('/');
        let addr = hostport
            .parse()
            .map_err(|_| format!("--etcd: `{url}` is not http://IP:PORT"))?;
        if !prefix.starts_with('/') {
            return Err(format!("--etcd-prefix: `{prefix}` does not start with /"));
        }
        Ok(Etcd {
            addr,
            prefix: prefix.to_string(),
        })
    }

    /// The end of the prefix's key range (the prefix with its last byte plus one).
    fn range_end(&self) -> Vec<u8> {
        let mut end = self.prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last = last.saturating_add(1);
        }
        end
    }

    /// Every key under the prefix with its value, and the store's revision.
    pub fn list(&self) -> Result<(i64, Vec<(String, String)>), String> {
        let r = self.post(
            "/v3/kv/range",
            &json!({"key": B64.encode(&self.prefix), "range_end": B64.encode(self.range_end())}),
        )?;
        let revision = number(&r["header"]["revision"]);
        let mut out = Vec::new();
        for kv in r["kvs"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let text = |k: &str| -> Result<String, String> {
                let raw = B64
                    .decode(kv[k].as_str().unwrap_or(""))
                    .map_err(|e| format!("etcd: a {k} is not base64: {e}"))?;
                String::from_utf8(raw).map_err(|_| format!("etcd: a {k} is not UTF-8"))
            };
            out.push((text("key")?, text("value")?));
        }
        Ok((revision, out))
    }

    /// A key's value and lease (0: none), when it exists.
    pub fn get(&self, key: &str) -> Result<Option<(String, i64)>, String> {
        let r = self.post("/v3/kv/range", &json!({"key": B64.encode(key)}))?;
        let Some(kv) = r["kvs"].as_array().and_then(|k| k.first()) else {
            return Ok(None);
        };
        let raw = B64
            .decode(kv["value"].as_str().unwrap_or(""))
            .map_err(|e| format!("etcd: a value is not base64: {e}"))?;
        Ok(Some((
            String::from_utf8_lossy(&raw).into_owned(),
            number(&kv["lease"]),
        )))
    }

    /// A new lease of `ttl` (whole seconds, at least one).
    pub fn grant(&self, ttl: Duration) -> Result<i64, String> {
        let secs = ttl.as_secs().max(1);
        let r = self.post("/v3/lease/grant", &json!({"TTL": secs.to_string()}))?;
        match number(&r["ID"]) {
            0 => Err(format!("etcd: lease grant answered {r}")),
            id => Ok(id),
        }
    }

    /// Refreshes a lease to its full TTL; false when it has expired.
    pub fn keepalive(&self, lease: i64) -> Result<bool, String> {
        let r = self.post("/v3/lease/keepalive", &json!({"ID": lease.to_string()}))?;
        Ok(number(&r["result"]["TTL"]) > 0)
    }

    pub fn put(&self, key: &str, value: &str, lease: i64) -> Result<(), String> {
        let mut body = json!({"key": B64.encode(key), "value": B64.encode(value)});
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        self.post("/v3/kv/put", &body).map(|_| ())
    }

    /// Deletes a key; false when there was none.
    pub fn delete(&self, key: &str) -> Result<bool, String> {
        let r = self.post("/v3/kv/deleterange", &json!({"key": B64.encode(key)}))?;
        Ok(number(&r["deleted"]) > 0)
    }

    /// Writes `value` at `key` under a new lease of `ttl`, unless the same value is
    /// there under a live lease, which is only refreshed (a heartbeat: no write, so no
    /// watch event and no push). `Ok(true)` when written.
    pub fn register(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, String> {
        if let Some((current, lease)) = self.get(key)? {
            if current == value && lease != 0 && self.keepalive(lease)? {
                return Ok(false);
            }
        }
        let lease = self.grant(ttl)?;
        self.put(key, value, lease)?;
        Ok(true)
    }

    /// Opens a watch on the prefix from `revision` on.
    pub fn watch(&self, revision: i64) -> Result<Watch, String> {
        let body = json!({"create_request": {
            "key": B64.encode(&self.prefix),
            "range_end": B64.encode(self.range_end()),
            "start_revision": revision.to_string()
        }})
        .to_string();
        let mut s = connect(self.addr)?;
        // The stream stays open while nothing changes: no read timeout.
        s.set_read_timeout(None).map_err(|e| e.to_string())?;
        write_request(&mut s, self.addr, "/v3/watch", &body, false)?;
        let mut r = BufReader::new(s);
        let (status, chunked, _) = read_head(&mut r)?;
        if status != 200 || !chunked {
            return Err(format!("etcd: watch answered {status}"));
        }
        Ok(Watch {
            r,
            pending: Vec::new(),
        })
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        let mut s = connect(self.addr)?;
        write_request(&mut s, self.addr, path, &body.to_string(), true)?;
        let mut r = BufReader::new(s);
        let (status, chunked, length) = read_head(&mut r)?;
        let mut raw = Vec::new();
        if chunked {
            while let Some(c) = chunk(&mut r)? {
                raw.extend_from_slice(&c);
                if raw.len() > MAX_RESPONSE {
                    return Err("etcd: the response is too large".into());
                }
            }
        } else if let Some(n) = length {
            if n > MAX_RESPONSE {
                return Err("etcd: the response is too large".into());
            }
            raw.resize(n, 0);
            r.read_exact(&mut raw).map_err(|e| format!("etcd: {e}"))?;
        } else {
            r.take(MAX_RESPONSE as u64)
                .read_to_end(&mut raw)
                .map_err(|e| format!("etcd: {e}"))?;
        }
        let v: Value =
            serde_json::from_slice(&raw).map_err(|e| format!("etcd: {path}: not JSON: {e}"))?;
        if status != 200 {
            return Err(format!("etcd: {path}: {status} {}", v["message"]));
        }
        Ok(v)
    }
}

/// An open watch: each `changed` blocks until etcd reports a change (or the stream ends).
pub struct Watch {
    r: BufReader<TcpStream>,
    pending: Vec<u8>,
}

impl Watch {
    /// Blocks until the watch reports changed keys.
    pub fn changed(&mut self) -> Result<(), String> {
        loop {
            while let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                let v: Value = serde_json::from_slice(&line)
                    .map_err(|e| format!("etcd: watch: not JSON: {e}"))?;
                if v.get("error").is_some() || v["result"]["canceled"] == json!(true) {
                    return Err(format!("etcd: watch ended: {v}"));
                }
                if v["result"]["events"]
                    .as_array()
                    .is_some_and(|e| !e.is_empty())
                {
                    return Ok(());
                }
            }
            match chunk(&mut self.r)? {
                Some(c) => self.pending.extend_from_slice(&c),
                None => return Err("etcd: the watch stream ended".into()),
            }
            if self.pending.len() > MAX_RESPONSE {
                return Err("etcd: a watch message is too large".into());
            }
        }
    }
}

fn number(v: &Value) -> i64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_i64())
        .unwrap_or(0)
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("etcd {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

fn write_request(
    s: &mut TcpStream,
    addr: SocketAddr,
    path: &str,
    body: &str,
    close: bool,
) -> Result<(), String> {
    let conn = if close { "connection: close\r\n" } else { "" };
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{conn}\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("etcd {addr}: {e}"))
}

/// The status, whether the body is chunked, and its length when given.
fn read_head(r: &mut BufReader<TcpStream>) -> Result<(u16, bool, Option<usize>), String> {
    let mut head = Vec::new();
    loop {
        let n = r
            .read_until(b'\n', &mut head)
            .map_err(|e| format!("etcd: {e}"))?;
        if n == 0 {
            return Err("etcd: the connection closed before the response".into());
        }
        if head.ends_with(b"\r\n\r\n") {
            break;
        }
        if head.len() > 64 * 1024 {
            return Err("etcd: the response head is too large".into());
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(&head)
        .map_err(|e| format!("etcd: bad response: {e}"))?;
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length = header("content-length").and_then(|v| v.trim().parse().ok());
    Ok((resp.code.unwrap_or(0), chunked, length))
}

/// The next chunk of a chunked body; `None` at its end.
fn chunk(r: &mut BufReader<TcpStream>) -> Result<Option<Vec<u8>>, String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| format!("etcd: {e}"))?;
    if line.is_empty() {
        return Err("etcd: the connection closed in a chunked body".into());
    }
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
        .map_err(|_| format!("etcd: bad chunk size {line:?}"))?;
    if size > MAX_RESPONSE {
        return Err("etcd: a chunk is too large".into());
    }
    let mut data = vec![0; size + 2];
    r.read_exact(&mut data).map_err(|e| format!("etcd: {e}"))?;
    data.truncate(size);
    if size == 0 {
        return Ok(None);
    }
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_prefixes_are_checked_and_the_range_ends_past_the_prefix() {
        let e = Etcd::new("http://127.0.0.1:2379/", "/outrigger/mesh/").unwrap();
        assert_eq!(e.addr.port(), 2379);
        assert_eq!(e.range_end(), b"/outrigger/mesh0");
        assert!(Etcd::new("https://127.0.0.1:2379", "/x/").is_err());
        assert!(Etcd::new("http://etcd:2379", "/x/").is_err());
        assert!(Etcd::new("http://127.0.0.1:2379", "x/").is_err());
    }
}
