//! What the window test needs to drive a real window: a virtual X display (`Xvfb`),
//! `tauri-driver` in front of `WebKitWebDriver`, and a minimal W3C WebDriver client over plain
//! HTTP/1.1 on a `TcpStream`. Every process started here is killed with its whole process group
//! when dropped, also when the test panics.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// The key W3C WebDriver puts element references under.
pub const ELEMENT_KEY: &str = "element-6066-11e4-a23d-4a6d2e8f0e9a";
/// The key WebKitWebDriver (WebKitGTK 2.4x, Debian 12) actually uses, which differs from the
/// standard's; both are read, and element references are sent back under the key they came in.
pub const WEBKIT_ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The WebDriver code for the Enter key.
pub const ENTER: &str = "\u{E007}";

/// The first of `names` not found on `PATH`, for the skip rule.
pub fn first_missing<'a>(names: &[&'a str]) -> Option<&'a str> {
    names.iter().copied().find(|name| on_path(name).is_none())
}

/// Where `name` is on `PATH`, if it is.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A child started in a process group of its own: dropping it kills the whole group (so
/// `WebKitWebDriver` and the app it launched go with `tauri-driver`), then reaps the child.
pub struct Group {
    pub child: Child,
    pub name: &'static str,
}

impl Group {
    pub fn spawn(name: &'static str, mut cmd: Command) -> Self {
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e}"));
        Self { child, name }
    }

    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Asks the group to stop (SIGTERM), then kills it after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal_group("-TERM");
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && self.child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // The leader may be gone while others of its group (WebKitWebDriver, the app) are not.
        self.signal_group("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}

/// A free loopback TCP port (bound then released: good enough on a test machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A virtual X display, `Xvfb :N`, on the first free display number from 99 upward.
pub struct Display {
    pub number: u32,
    server: Group,
}

impl Display {
    pub fn start(log: &Path) -> Self {
        for number in 99..140 {
            let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
            let lock = PathBuf::from(format!("/tmp/.X{number}-lock"));
            if socket.exists() || lock.exists() {
                continue;
            }
            let mut cmd = Command::new("Xvfb");
            cmd.arg(format!(":{number}"))
                .args(["-screen", "0", "1280x800x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).expect("Xvfb log"));
            let mut server = Group::spawn("Xvfb", cmd);
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if socket.exists() {
                    return Self { number, server };
                }
                if server.child.try_wait().ok().flatten().is_some() {
                    // Another server took this number in the meantime: try the next one.
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "Xvfb :{number} did not create {} within 15 s; its log:\n{}",
                    socket.display(),
                    tail(log, 20)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("no free X display number between :99 and :139");
    }

    pub fn name(&self) -> String {
        format!(":{}", self.number)
    }
}

/// `tauri-driver` on a free port, with `WebKitWebDriver` on another, both showing windows on
/// `display`. Extra environment goes to both, and so to the app they start.
pub struct Driver {
    pub addr: SocketAddr,
    group: Group,
    log: PathBuf,
}

impl Driver {
    pub fn start(display: &Display, log: &Path, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let native = loop {
            let p = free_port();
            if p != port {
                break p;
            }
        };
        let mut cmd = Command::new("tauri-driver");
        cmd.args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        .env("DISPLAY", display.name())
        // No accessibility bus on a headless display: spare the warnings.
        .env("NO_AT_BRIDGE", "1")
        .env_remove("WAYLAND_DISPLAY")
        .stdout(std::fs::File::create(log).expect("tauri-driver log"))
        .stderr(
            std::fs::OpenOptions::new()
                .append(true)
                .open(log)
                .expect("tauri-driver log"),
        );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut group = Group::spawn("tauri-driver", cmd);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let native_addr = SocketAddr::from(([127, 0, 0, 1], native));
        // tauri-driver prints nothing when ready: wait until both ports accept connections.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok();
            if up(&addr) && up(&native_addr) {
                break;
            }
            if let Some(status) = group.child.try_wait().ok().flatten() {
                panic!(
                    "tauri-driver exited ({status}) before listening; its log:\n{}",
                    tail(log, 30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "tauri-driver did not listen on {addr} (native {native_addr}) within 30 s; its log:\n{}",
                tail(log, 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            addr,
            group,
            log: log.to_owned(),
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

/// The last `lines` lines of a log file (or why it could not be read).
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].iter().fold(String::new(), |mut out, line| {
                let _ = writeln!(out, "  | {line}");
                out
            })
        }
        Err(e) => format!("  ({}: {e})", path.display()),
    }
}

/// A WebDriver error answer, or a transport failure (`error` = "transport").
#[derive(Debug, Clone)]
pub struct Error {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.error, self.status, self.message)
    }
}

fn transport(message: impl std::fmt::Display) -> Error {
    Error {
        status: 0,
        error: "transport".into(),
        message: message.to_string(),
    }
}

/// One HTTP/1.1 request with `Connection: close`; the answer's `value`, or its error.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, Error> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(transport)?;
    stream.set_read_timeout(Some(timeout)).map_err(transport)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(transport)?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if body.is_some() || method == "POST" {
        let _ = write!(
            head,
            "Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n",
            payload.len()
        );
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(transport)?;
    stream.write_all(payload.as_bytes()).map_err(transport)?;
    stream.flush().map_err(transport)?;

    let Response {
        status,
        headers,
        body,
    } = read_response(&mut stream).map_err(|e| transport(format!("{method} {path}: {e}")))?;
    let value: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            transport(format!(
                "{method} {path}: answer {status} is not JSON ({e}); headers {headers:?}: {}",
                String::from_utf8_lossy(&body)
            ))
        })?
    };
    let value = value.get("value").cloned().unwrap_or(value);
    if (200..300).contains(&status) {
        Ok(value)
    } else {
        Err(Error {
            status,
            error: value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned(),
            message: value["message"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned),
        })
    }
}

/// One HTTP/1.1 response.
struct Response {
    status: u16,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    /// De-chunked.
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 response.
fn read_response(stream: &mut TcpStream) -> Result<Response, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let header_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed before the headers ended ({} bytes: {:?})",
                buf.len(),
                String::from_utf8_lossy(&buf)
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut rest = buf[header_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    let chunked =
        header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        // Read to the end (Connection: close), then decode the chunks.
        stream
            .read_to_end(&mut rest)
            .map_err(|e| format!("reading the body: {e}"))?;
        dechunk(&rest)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad Content-Length {len:?}"))?;
        while rest.len() < len {
            let n = stream
                .read(&mut chunk)
                .map_err(|e| format!("reading the body: {e}"))?;
            if n == 0 {
                return Err(format!("body cut at {} of {len} bytes", rest.len()));
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else {
        stream
            .read_to_end(&mut rest)
            .map_err(|e| format!("reading the body: {e}"))?;
        rest
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or("chunk size line without CRLF")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(format!("chunk of {size} bytes cut short"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// One WebDriver session; deleted (which closes the app) when dropped.
pub struct Session {
    pub addr: SocketAddr,
    pub id: String,
    deleted: bool,
}

/// A found element's reference: the key it came under, and its id.
#[derive(Debug, Clone)]
pub struct Element {
    pub key: String,
    pub id: String,
}

impl Element {
    /// The reference in `value` (an element as the remote end returns it), if any.
    pub fn from_value(value: &Value) -> Option<Self> {
        [ELEMENT_KEY, WEBKIT_ELEMENT_KEY].iter().find_map(|key| {
            value[*key].as_str().map(|id| Self {
                key: (*key).to_owned(),
                id: id.to_owned(),
            })
        })
    }

    /// The reference to pass back as a script argument.
    pub fn to_value(&self) -> Value {
        let mut map = serde_json::Map::new();
        map.insert(self.key.clone(), Value::String(self.id.clone()));
        Value::Object(map)
    }
}

impl Session {
    /// `POST /session` with these capabilities; allows `timeout` for the app to start.
    pub fn create(
        addr: SocketAddr,
        capabilities: &Value,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let value = request(addr, "POST", "/session", Some(capabilities), timeout)?;
        let id = value["sessionId"]
            .as_str()
            .ok_or_else(|| transport(format!("no sessionId in {value}")))?
            .to_owned();
        Ok(Self {
            addr,
            id,
            deleted: false,
        })
    }

    /// One command of this session. tauri-driver sometimes forwards a command on a pooled
    /// connection to WebKitWebDriver that the latter has already closed, and answers by closing
    /// ours without a byte ("client error (SendRequest)" in its log): the command never reached
    /// the browser, so it is sent again, up to three times.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Error> {
        let path = format!("/session/{}{path}", self.id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match request(self.addr, method, &path, body, Duration::from_secs(30)) {
                Err(e) if attempt < 4 && e.status == 0 && e.message.contains("(0 bytes") => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// `DELETE /session/{id}`: closes the app's window.
    pub fn delete(&mut self) -> Result<(), Error> {
        if self.deleted {
            return Ok(());
        }
        self.deleted = true;
        request(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.id),
            None,
            Duration::from_secs(10),
        )
        .map(drop)
    }

    pub fn find(&self, css: &str) -> Result<Element, Error> {
        let value = self.call(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        Element::from_value(&value)
            .ok_or_else(|| transport(format!("no element reference in {value}")))
    }

    /// The element, once it is in the page and shown, within `timeout`.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.find(css) {
                Ok(el) => match self.displayed(&el) {
                    Ok(true) => return Ok(el),
                    Ok(false) => transport(format!("{css} is in the page but not shown")),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(Error {
                    message: format!("waited {timeout:?} for {css}: {}", last.message.trim()),
                    ..last
                });
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Shown: in the layout and not inside a `hidden` ancestor (checked in the page, which is
    /// what the UI's `hidden` toggling means).
    pub fn displayed(&self, el: &Element) -> Result<bool, Error> {
        let value = self.execute(
            "const e = arguments[0]; return !!e && !e.closest('[hidden]') && e.getClientRects().length > 0;",
            &[self.element_arg(el)],
        )?;
        Ok(value == Value::Bool(true))
    }

    pub fn element_arg(&self, el: &Element) -> Value {
        el.to_value()
    }

    pub fn click(&self, el: &Element) -> Result<(), Error> {
        self.call(
            "POST",
            &format!("/element/{}/click", el.id),
            Some(&json!({})),
        )
        .map(drop)
    }

    /// Types `text` into the element (WebDriver key codes such as [`ENTER`] allowed).
    pub fn send_keys(&self, el: &Element, text: &str) -> Result<(), Error> {
        self.call(
            "POST",
            &format!("/element/{}/value", el.id),
            Some(&json!({ "text": text })),
        )
        .map(drop)
    }

    pub fn text(&self, el: &Element) -> Result<String, Error> {
        self.call("GET", &format!("/element/{}/text", el.id), None)
            .map(|v| v.as_str().unwrap_or_default().to_owned())
    }

    pub fn property(&self, el: &Element, name: &str) -> Result<Value, Error> {
        self.call("GET", &format!("/element/{}/property/{name}", el.id), None)
    }

    pub fn attribute(&self, el: &Element, name: &str) -> Result<Value, Error> {
        self.call("GET", &format!("/element/{}/attribute/{name}", el.id), None)
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its result.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value, Error> {
        self.call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script` asynchronously: it ends by calling `arguments[arguments.length - 1]`
    /// with its result.
    pub fn execute_async(&self, script: &str, args: &[Value]) -> Result<Value, Error> {
        self.call(
            "POST",
            "/execute/async",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Returns once the page has painted two more frames.
    pub fn next_frames(&self) -> Result<(), Error> {
        self.execute_async(
            "const done = arguments[arguments.length - 1]; \
             requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
            &[],
        )
        .map(drop)
    }

    /// The screenshot of the window, as PNG bytes.
    pub fn screenshot(&self) -> Result<Vec<u8>, Error> {
        let value = self.call("GET", "/screenshot", None)?;
        let b64 = value
            .as_str()
            .ok_or_else(|| transport(format!("screenshot is not a string: {value}")))?;
        base64_decode(b64).map_err(transport)
    }

    /// Sets the window's size (`POST /window/rect`); returns the new rect.
    pub fn set_window_size(&self, width: u32, height: u32) -> Result<Value, Error> {
        self.call(
            "POST",
            "/window/rect",
            Some(&json!({ "width": width, "height": height })),
        )
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.delete();
    }
}

/// Standard base64 (with or without padding; whitespace ignored).
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text.as_bytes() {
        if c == b'=' {
            break;
        }
        if c.is_ascii_whitespace() {
            continue;
        }
        let v = sextet(c).ok_or_else(|| format!("not base64: byte {c:#04x}"))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).expect("masked to a byte"));
        }
    }
    Ok(out)
}
