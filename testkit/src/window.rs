//! A real window for a test to drive: a virtual X display (`Xvfb`) and `tauri-driver` in
//! front of `WebKitWebDriver`, each killed with its whole process group when dropped.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::process::{Group, tail};

/// A free loopback TCP port (bound then released: good enough on a test machine).
///
/// # Panics
/// When nothing can bind `127.0.0.1:0`.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A virtual X display, `Xvfb :N` at 1280x800, on the first free display number from 99 up.
pub struct Display {
    number: u32,
    _server: Group,
}

impl Display {
    /// Starts it, its stderr in `log`.
    ///
    /// # Panics
    /// When no display number from 99 to 139 is free, or Xvfb does not come up in 15 s.
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
                    return Self {
                        number,
                        _server: server,
                    };
                }
                if server.try_wait().is_some() {
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

    /// `:N`, for `DISPLAY`.
    pub fn name(&self) -> String {
        format!(":{}", self.number)
    }
}

/// `tauri-driver` on a free port, with `WebKitWebDriver` on another, both showing windows on
/// a [`Display`]. Extra environment goes to both, and so to the app they start.
pub struct Driver {
    addr: SocketAddr,
    _group: Group,
    log: PathBuf,
}

impl Driver {
    /// Starts it, its output in `log`, and waits until both ports accept connections.
    ///
    /// # Panics
    /// When it exits or does not listen within 30 s.
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
            if let Some(status) = group.try_wait() {
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
            _group: group,
            log: log.to_owned(),
        }
    }

    /// The WebDriver endpoint, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}
