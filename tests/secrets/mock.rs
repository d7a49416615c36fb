//! A blocking HTTP/1.1 mock on 127.0.0.1:0 for the secret stores (std only, so the crate's
//! own unit tests can include it with `#[path]`): every request is recorded (method, path,
//! query, lower-cased headers, body) and answered by a handler closure, which sees the
//! request and how many requests came before it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
    /// The query parameters, percent-decoded (`+` as a space).
    pub fn params(&self) -> Vec<(String, String)> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect()
    }
    pub fn param(&self, name: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(h, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(status: u16, body: serde_json::Value) -> Resp {
        Resp {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }
    pub fn text(status: u16, body: &str) -> Resp {
        Resp {
            status,
            headers: vec![],
            body: body.to_string(),
        }
    }
    pub fn header(mut self, n: &str, v: &str) -> Resp {
        self.headers.push((n.into(), v.into()));
        self
    }
}

type Handler = dyn Fn(&Req, usize) -> Resp + Send + Sync;

/// The server: its base URL and everything it saw.
pub struct Mock {
    pub url: String,
    pub addr: String,
    seen: Arc<Mutex<Vec<Req>>>,
    handler: Arc<Mutex<Arc<Handler>>>,
}

impl Mock {
    pub fn start(handler: impl Fn(&Req, usize) -> Resp + Send + Sync + 'static) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mock");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen: Arc<Mutex<Vec<Req>>> = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Mutex<Arc<Handler>>> = Arc::new(Mutex::new(Arc::new(handler)));
        let (s, h) = (seen.clone(), handler.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, h) = (s.clone(), h.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &s, &h);
                });
            }
        });
        Mock {
            url: format!("http://{addr}"),
            addr,
            seen,
            handler,
        }
    }

    /// Replace the handler (a store that starts failing, a secret rotated).
    pub fn set(&self, handler: impl Fn(&Req, usize) -> Resp + Send + Sync + 'static) {
        *self.handler.lock().expect("lock") = Arc::new(handler);
    }

    pub fn seen(&self) -> Vec<Req> {
        self.seen.lock().expect("lock").clone()
    }

    /// The requests whose path starts with `prefix`.
    pub fn at(&self, prefix: &str) -> Vec<Req> {
        self.seen()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// Wait until `n` requests under `prefix` arrived (or `limit` passed); returns them.
    pub fn wait_at(&self, prefix: &str, n: usize, limit: Duration) -> Vec<Req> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.at(prefix);
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve(
    stream: std::net::TcpStream,
    seen: &Mutex<Vec<Req>>,
    handler: &Mutex<Arc<Handler>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l)? == 0 {
            break;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let req = Req {
        method,
        path,
        query,
        headers,
        body,
    };
    let n = {
        let mut s = seen.lock().expect("lock");
        s.push(req.clone());
        s.len() - 1
    };
    let h = handler.lock().expect("lock").clone();
    let resp = h(&req, n);
    let mut out = format!(
        "HTTP/1.1 {} Mock\r\ncontent-length: {}\r\nconnection: close\r\n",
        resp.status,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&resp.body);
    reader.get_mut().write_all(out.as_bytes())?;
    reader.get_mut().flush()
}
