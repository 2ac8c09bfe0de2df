//! The desktop app end to end, in a real window: a virtual X display (`Xvfb`), `tauri-driver`
//! and `WebKitWebDriver` driving the real `parley-desktop`, a real `parley-rendezvous`, and a
//! headless peer `bob` (`parley daemon`). The app is opened with the rendezvous's invite, as a
//! `parley:` link opens it; alice pastes a tampered invite (refused on the screen with its
//! sentence), then the one the rendezvous printed, and enrolls in the window; she writes to bob, bob answers
//! from the terminal (one answer is hostile HTML, which must show literally), the window is
//! shrunk to its minimum size without anything overflowing, and a screenshot is kept as an
//! artifact (`$PARLEY_ARTIFACTS`, else `<target dir>/artifacts`).
//!
//! Needs `Xvfb`, `WebKitWebDriver` and `tauri-driver` (scripts/desktop-deps.sh installs them):
//! without them the test says SKIPPED, and fails under `CI`. The binaries `parley` and
//! `parley-rendezvous` must be built beside `parley-desktop`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    future::Future,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use parley_testkit::{
    Daemon, Log, Rendezvous, enroll, parley, skip, stderr, tail, texts,
    tools::{first_missing, oathtool, on_path},
    window::{Display, Driver},
};
use serde_json::{Value, json};
use thirtyfour::{By, Key, WebDriver, WebElement, error::WebDriverErrorInner};

/// Every wait's bound, except the first paint and enrollment.
const WAIT: Duration = Duration::from_secs(30);
/// The app's start (first paint) and enrollment (key generation, certificate, first dial).
const SLOW_WAIT: Duration = Duration::from_secs(60);
/// The whole test's bound: the waits in the window get what is left of it, at most.
const TOTAL: Duration = Duration::from_secs(180);
/// The bound of one WebDriver command.
const COMMAND: Duration = Duration::from_secs(30);

const HOSTILE: &str = "<img src=x onerror=alert(1)>";
const REPLY: &str = "hi alice from the terminal";
const VANISHING: &str = "this one disappears in five minutes";
/// The screenshot taken when the test fails, beside the others.
const FAILURE_SHOT: &str = "desktop-failure.png";

#[test]
fn a_conversation_in_the_window() {
    let started = Instant::now();
    if let Some(missing) = first_missing(&["Xvfb", "WebKitWebDriver", "tauri-driver"]) {
        skip(&format!(
            "desktop window test: {missing} is missing; ./test.sh installs it"
        ));
        return;
    }
    let desktop = PathBuf::from(env!("CARGO_BIN_EXE_parley-desktop"));

    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Printed on failure (the guard is dropped after the processes, which are declared later).
    let _logs_on_failure = LogsOnFailure(logs.clone());

    // The rendezvous, and bob in the terminal.
    let rv = Rendezvous::options(&dir.path().join("rendezvous"))
        .log(Log::File(logs.join("rendezvous.log")))
        .start();
    // The `invite:` start line, which testkit reads and checks.
    let invite = rv.invite.clone();
    let bob = dir.path().join("bob");
    let out = enroll(&rv, &bob, "bob", "pw-bob");
    assert!(
        out.status.success(),
        "bob's enrollment failed: {}",
        stderr(&out)
    );
    let _bob_daemon = Daemon::options(&bob)
        .log(Log::File(logs.join("bob-daemon.log")))
        .start();

    // The display, the drivers, and the app in its window.
    let display = Display::start(&logs.join("xvfb.log"));
    let runtime = dir.path().join("xdg-runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    set_private(&runtime);
    let driver = Driver::start(
        &display,
        &logs.join("tauri-driver.log"),
        &[
            ("XDG_RUNTIME_DIR", runtime.to_str().unwrap()),
            ("RUST_LOG", "info"),
        ],
    );
    let alice = dir.path().join("alice");
    let downloads = dir.path().join("downloads");
    let capabilities = json!({"tauri:options": {
        "application": desktop,
        "args": [
            "--home", alice, "--listen", "/ip4/127.0.0.1/tcp/0",
            "--downloads", downloads, invite,
        ],
    }});
    let capabilities = capabilities
        .as_object()
        .cloned()
        .expect("capabilities are an object");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the WebDriver client");
    let session = rt
        .block_on(
            WebDriver::builder(driver.url(), capabilities)
                .request_timeout(SLOW_WAIT)
                .into_future(),
        )
        .unwrap_or_else(|e| {
            panic!(
                "no WebDriver session (the app did not start?): {e}\ntauri-driver's and WebKitWebDriver's log:\n{}",
                driver.log_tail(40)
            )
        });
    let ui = Ui {
        runtime: &rt,
        session: &session,
        artifacts: artifacts_dir(&desktop),
        deadline: started + TOTAL,
    };
    let _ = std::fs::remove_file(ui.artifacts.join(FAILURE_SHOT));

    // First run: the form is prefilled from the invite the app was opened with.
    let username = ui.shown("#enroll-username", SLOW_WAIT);
    assert_eq!(
        ui.value("#enroll-invite"),
        invite,
        "the invite field is prefilled"
    );
    ui.until_seen(
        "the server and fingerprint fields to be filled in from the invite on the command line",
        WAIT,
        || (ui.value("#enroll-server"), ui.value("#enroll-fingerprint")),
        |(server, fingerprint)| *server == rv.url && *fingerprint == rv.fingerprint,
    );
    // The first-run screen at the smallest size the window allows.
    ui.resize(800, 600);
    ui.save_screenshot("desktop-first-run.png");
    ui.run(|| username.send_keys("alice"));
    let password = ui.shown("#enroll-password", WAIT);
    let submit = ui.shown("#enroll-submit", WAIT);
    // Pasted by hand: a malformed invite says why on the screen; the printed one fills in
    // the server and the fingerprint, which stay in view.
    let invite_field = ui.shown("#enroll-invite", WAIT);
    for css in ["#enroll-invite", "#enroll-server", "#enroll-fingerprint"] {
        let field = ui.shown(css, WAIT);
        ui.run(|| field.clear());
    }
    ui.run(|| invite_field.send_keys(invite.replace("&ca=", "&ca=sha256%3A")));
    ui.until_seen(
        "the malformed invite's sentence under the Invite field",
        WAIT,
        || ui.text("#enroll-invite-error"),
        |t| t.contains("the invite's ca is not sha256:"),
    );
    // One hex digit of the fingerprint changed: well formed, so it fills in the fields, but
    // the rendezvous presents another CA and enrolling is refused.
    let tampered = tamper(&invite);
    ui.run(|| invite_field.clear());
    ui.run(|| invite_field.send_keys(&tampered));
    ui.until_seen(
        "the tampered fingerprint to be filled in",
        WAIT,
        || ui.value("#enroll-fingerprint"),
        |fingerprint| *fingerprint != rv.fingerprint && fingerprint.starts_with("sha256:"),
    );
    ui.run(|| password.send_keys("pw-alice"));
    ui.run(|| submit.click());
    ui.until_seen(
        "the tampered invite's enrollment to be refused on the screen",
        SLOW_WAIT,
        || ui.text("#enroll-error"),
        |t| t.contains("this may not be your rendezvous"),
    );
    assert!(
        ui.script("return !document.getElementById('screen-enroll').hidden;") == Value::Bool(true)
    );
    ui.run(|| invite_field.clear());
    ui.run(|| invite_field.send_keys(&invite));
    ui.until_seen(
        "the pasted invite to fill in the server and fingerprint fields, and no error",
        WAIT,
        || {
            (
                ui.value("#enroll-server"),
                ui.value("#enroll-fingerprint"),
                ui.script_str(
                    "return document.getElementById('enroll-invite-error').hidden ? '' : 'shown';",
                ),
            )
        },
        |(server, fingerprint, error)| {
            *server == rv.url && *fingerprint == rv.fingerprint && error.is_empty()
        },
    );
    ui.run(|| password.send_keys("pw-alice"));
    ui.run(|| submit.click());
    ui.shown("#screen-main", SLOW_WAIT);
    ui.until_seen(
        "#status-user to say alice",
        WAIT,
        || ui.text("#status-user"),
        |t| t.contains("alice"),
    );
    assert_eq!(
        ui.value("#enroll-password"),
        "",
        "the password field is cleared once enrolled"
    );

    // Alice writes to bob; Enter sends.
    let new = ui.shown("#new-conversation", WAIT);
    ui.run(|| new.click());
    let username = ui.shown("#new-username", WAIT);
    ui.run(|| username.send_keys("bob"));
    let start = ui.shown("#new-start", WAIT);
    ui.run(|| start.click());
    let composer = ui.shown("#composer-text", WAIT);
    ui.run(|| composer.send_keys(format!("hello bob{}", Key::Enter.value())));
    ui.until_seen(
        "the message to bob to show as delivered",
        WAIT,
        || {
            ui.script(
                "return [...document.querySelectorAll('li.message.outgoing')].map(li => \
                 [li.querySelector('.text')?.textContent, li.querySelector('.delivery')?.textContent]);",
            )
        },
        |seen| {
            seen.as_array().is_some_and(|items| {
                items.iter().any(|m| {
                    m[0] == "hello bob" && m[1].as_str().is_some_and(|d| d.contains("delivered"))
                })
            })
        },
    );
    assert_eq!(
        ui.script_str(
            "const t = document.querySelector('li.message.outgoing .text'); return t ? t.textContent : '';"
        ),
        "hello bob"
    );
    assert_eq!(
        ui.value("#composer-text"),
        "",
        "the composer is emptied once sent"
    );
    let bob_has = texts(&bob, "alice");
    assert!(
        bob_has.contains(&("alice".to_owned(), "hello bob".to_owned())),
        "bob's history with alice lacks \"hello bob\": {bob_has:?}"
    );

    // Bob answers from the terminal, once plainly and once with hostile HTML.
    // A page script replaces alert() (Tauri's freezePrototype freezes prototypes, not window)
    // and proves the replacement catches a call; if it cannot, only the <img> check is left.
    let trap = ui.script(
        "try { window.__alerts = []; window.alert = (m) => { window.__alerts.push(String(m)); }; \
         window.alert('probe'); const caught = window.__alerts.length === 1; \
         window.__alerts = []; return caught; } catch (e) { return String(e); }",
    );
    let alerts_trapped = trap == Value::Bool(true);
    for text in [REPLY, HOSTILE] {
        let out = parley(&bob, &["send", "alice", text]);
        assert!(
            out.status.success(),
            "bob could not send {text:?}: {}",
            stderr(&out)
        );
    }
    ui.until_seen(
        "both of bob's messages in the window",
        WAIT,
        || ui.incoming_texts(),
        |incoming| incoming.iter().any(|t| t == REPLY) && incoming.iter().any(|t| t == HOSTILE),
    );
    let hostile = ui.hostile_item();
    assert_eq!(
        hostile["text"], HOSTILE,
        "the hostile message shows literally: {hostile}"
    );
    assert_eq!(
        hostile["verified"], true,
        "bob's message carries the verified badge: {hostile}"
    );
    assert_eq!(
        ui.script("return document.querySelectorAll('#messages img').length;"),
        json!(0),
        "a message made an <img> element in #messages"
    );
    assert_eq!(
        ui.script("return document.querySelectorAll('img[src=x], img[src=\"x\"]').length;"),
        json!(0),
        "the hostile message made an <img> element somewhere in the page"
    );
    if alerts_trapped {
        assert_eq!(
            ui.script("return window.__alerts;"),
            json!([]),
            "the hostile message ran alert()"
        );
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "note: window.alert could not be replaced in the page ({trap}); \
             checked that no <img> exists instead"
        );
    }
    let reply = ui.script(
        "const li = [...document.querySelectorAll('li.message.incoming')].find(l => l.querySelector('.text').textContent === 'hi alice from the terminal'); \
         return li ? !!li.querySelector('.badge.verified') : null;",
    );
    assert_eq!(
        reply,
        json!(true),
        "bob's plain reply carries the verified badge"
    );

    // A disappearing message: the timer is chosen in the composer, the window counts down,
    // and bob's copy carries the same time to live.
    ui.script(
        "const t = document.getElementById('composer-ttl'); t.value = '5m'; \
         t.dispatchEvent(new Event('change', { bubbles: true })); return t.value;",
    );
    let composer = ui.shown("#composer-text", WAIT);
    ui.run(|| composer.send_keys(format!("{VANISHING}{}", Key::Enter.value())));
    ui.until_seen(
        "the disappearing message to show as delivered, with its time left",
        WAIT,
        || {
            ui.script(&format!(
                "const li = [...document.querySelectorAll('li.message.outgoing')].find(l => l.querySelector('.text').textContent === '{VANISHING}'); \
                 return li ? [li.querySelector('.delivery')?.textContent, li.querySelector('.ttl-left')?.textContent] : null;"
            ))
        },
        |seen| {
            seen[0].as_str().is_some_and(|d| d.contains("delivered"))
                && seen[1].as_str().is_some_and(|t| t.contains("disappears in"))
        },
    );
    let out = parley(&bob, &["history", "alice", "--json"]);
    let history: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let bobs_copy = history["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["text"] == VANISHING).cloned())
        .unwrap_or_else(|| panic!("bob lacks the disappearing message: {history}"));
    assert_eq!(bobs_copy["ttl"], "5m", "{bobs_copy}");

    // Contact details: the safety number is the one bob's terminal shows.
    let details = ui.shown("#contact-details-button", WAIT);
    ui.run(|| details.click());
    ui.shown("#safety-number", WAIT);
    let in_window = ui.until_seen(
        "the safety number in the contact details",
        WAIT,
        || ui.text("#safety-number"),
        |t| t.chars().filter(char::is_ascii_digit).count() >= 30,
    );
    let out = parley(&bob, &["safety-number", "alice", "--json"]);
    let bobs: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    assert_eq!(
        digits(&in_window),
        digits(bobs["safety_number"].as_str().unwrap_or_default()),
        "alice's window and bob's terminal show different safety numbers"
    );
    // And when the conversation's keys last moved on (the first messages each stepped them).
    ui.until_seen(
        "when the keys last moved on, in the contact details",
        WAIT,
        || ui.text("#keys-moved"),
        |t| t.contains("keys last moved on") && t.contains(" in all)"),
    );
    ui.save_screenshot("desktop-contact-details.png");
    let close = ui.shown("#contact-close", WAIT);
    ui.run(|| close.click());

    // The second factor, turned on in the window: its URI as text and as a QR code that
    // decodes as an image; from then on alice's name does not enroll with the password alone.
    let open = ui.shown("#totp-open", WAIT);
    ui.run(|| open.click());
    let enable = ui.shown("#totp-enable", WAIT);
    ui.run(|| enable.click());
    let uri = ui.until_seen(
        "the second factor's otpauth:// URI in the dialog",
        WAIT,
        || ui.text("#totp-uri"),
        |t| t.starts_with("otpauth://totp/Parley:alice?secret="),
    );
    ui.until_seen(
        "the second factor's QR code, decoded",
        WAIT,
        || ui.script("const i = document.getElementById('totp-qr'); return i.complete && i.naturalWidth > 0;"),
        |decoded| *decoded == Value::Bool(true),
    );
    ui.save_screenshot("desktop-second-factor.png");
    let secret = uri
        .trim()
        .strip_prefix("otpauth://totp/Parley:alice?secret=")
        .and_then(|rest| rest.strip_suffix("&issuer=Parley"))
        .unwrap_or_else(|| ui.fail(&format!("not the contract's URI: {uri}")))
        .to_owned();
    let elsewhere = dir.path().join("alice-elsewhere");
    let out = enroll(&rv, &elsewhere, "alice", "pw-alice");
    assert!(
        !out.status.success() && stderr(&out).contains("second factor"),
        "with the second factor on, the password alone enrolled alice: {}",
        stderr(&out)
    );
    // Off again in the window, with oathtool's code (an independent RFC 6238 implementation).
    if on_path("oathtool").is_some() {
        let code = oathtool(&secret, 0);
        let field = ui.shown("#totp-code", WAIT);
        ui.run(|| field.send_keys(&code));
        let off = ui.shown("#totp-disable", WAIT);
        ui.run(|| off.click());
        ui.until_seen(
            "the second factor turned off",
            WAIT,
            || ui.text("#totp-done"),
            |t| t.contains("second factor is off"),
        );
        assert!(
            enroll(&rv, &elsewhere, "alice", "pw-alice")
                .status
                .success(),
            "the password alone enrolls alice again"
        );
    } else {
        skip("the window test turns the second factor off with oathtool's code");
    }
    let close = ui.shown("#totp-close", WAIT);
    ui.run(|| close.click());

    // At 1280x800, then at the minimum size: nothing overflows, the composer stays in view.
    ui.resize(1280, 800);
    ui.save_screenshot("desktop-conversation-1280x800.png");
    ui.resize(800, 600);
    let layout = ui.script(
        "const r = document.getElementById('composer-text').getBoundingClientRect(); \
         return { scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, \
                  innerHeight: window.innerHeight, composerBottom: r.bottom, composerRight: r.right, \
                  composerTop: r.top };",
    );
    let num = |k: &str| layout[k].as_f64().unwrap_or(f64::NAN);
    assert!(
        num("scrollWidth") <= num("innerWidth"),
        "the page overflows horizontally at 800x600: {layout}"
    );
    assert!(
        num("composerBottom") <= num("innerHeight") && num("composerTop") >= 0.0,
        "#composer-text is not within the viewport at 800x600: {layout}"
    );
    assert!(
        num("composerRight") <= num("innerWidth"),
        "#composer-text sticks out on the right at 800x600: {layout}"
    );
    ui.save_screenshot("desktop-conversation.png");

    let _ = rt.block_on(session.quit());
    drop(driver);
    drop(display);
    let _ = writeln!(
        std::io::stderr(),
        "desktop window test passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// `$PARLEY_ARTIFACTS`, else `<target dir>/artifacts` (the binary is `<target>/<profile>/…`).
/// The invite with the last hex digit of its fingerprint changed.
fn tamper(invite: &str) -> String {
    let (head, last) = invite.split_at(invite.len() - 1);
    format!("{head}{}", if last == "0" { '1' } else { '0' })
}

fn artifacts_dir(desktop: &Path) -> PathBuf {
    let dir = std::env::var_os("PARLEY_ARTIFACTS").map_or_else(
        || {
            desktop
                .parent()
                .and_then(Path::parent)
                .map_or_else(|| PathBuf::from("target"), Path::to_owned)
                .join("artifacts")
        },
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create the artifacts folder {}: {e}", dir.display()));
    dir
}

fn set_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// The window, seen through the WebDriver session, with failures that say what the page shows.
struct Ui<'a> {
    runtime: &'a tokio::runtime::Runtime,
    session: &'a WebDriver,
    artifacts: PathBuf,
    /// When the whole test must be over.
    deadline: Instant,
}

impl Ui<'_> {
    /// One WebDriver command, within [`COMMAND`]. tauri-driver sometimes forwards a command on
    /// a pooled connection to WebKitWebDriver that the latter has already closed, and answers
    /// by closing ours without an answer ("client error (SendRequest)" in its log): the command
    /// never reached the browser, so a failure of the HTTP exchange itself is sent again, up to
    /// three times.
    fn call<T, F>(&self, command: impl Fn() -> F) -> Result<T, String>
    where
        F: Future<Output = thirtyfour::error::WebDriverResult<T>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The timer is made inside the runtime: `timeout` needs one when it is called.
            match self
                .runtime
                .block_on(async { tokio::time::timeout(COMMAND, command()).await })
            {
                Err(_) => return Err(format!("no answer within {COMMAND:?}")),
                Ok(Err(e))
                    if attempt < 4 && matches!(e.as_inner(), WebDriverErrorInner::HttpError(_)) =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(result) => return result.map_err(|e| e.to_string()),
            }
        }
    }

    /// [`Ui::call`], failing the test with the page's state when the command fails.
    fn run<T, F>(&self, command: impl Fn() -> F) -> T
    where
        F: Future<Output = thirtyfour::error::WebDriverResult<T>>,
    {
        self.call(command)
            .unwrap_or_else(|e| self.fail(&format!("WebDriver command failed: {e}")))
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its result.
    fn execute(&self, script: &str, args: &[Value]) -> Result<Value, String> {
        self.call(|| async {
            let answer = self.session.execute(script, args.to_vec()).await?;
            Ok(answer.json().clone())
        })
    }

    /// What the page shows that explains a failure: the visible screen and error texts.
    fn diagnosis(&self) -> String {
        self.execute(
            "const shown = (e) => e && !e.closest('[hidden]') && e.getClientRects().length > 0; \
             const screens = [...document.querySelectorAll('section.screen')].filter(shown).map(s => s.id); \
             const errors = [...document.querySelectorAll('.form-error, #composer-error, #fatal-message, #banner-text, #new-error, #enroll-error, #unlock-error')] \
               .filter(e => shown(e) && e.textContent.trim()).map(e => `#${e.id}: ${e.textContent.trim()}`); \
             return { screens, errors: [...new Set(errors)], loading: shown(document.getElementById('loading')) };",
            &[],
        )
        .map_or_else(|e| format!("(the page could not be read: {e})"), |v| v.to_string())
    }

    /// Fails with the page's state and a screenshot of it.
    fn fail(&self, what: &str) -> ! {
        let diagnosis = self.diagnosis();
        let shot = self.artifacts.join(FAILURE_SHOT);
        let saved = match self.call(|| self.session.screenshot_as_png()) {
            Ok(png) if std::fs::write(&shot, &png).is_ok() => {
                format!("screenshot: {}", shot.display())
            }
            Ok(_) => "the screenshot could not be written".to_owned(),
            Err(e) => format!("no screenshot: {e}"),
        };
        panic!("{what}\npage: {diagnosis}\n{saved}");
    }

    /// `timeout`, or less when the test's whole time is nearly spent.
    fn bounded(&self, timeout: Duration) -> Duration {
        timeout.min(self.deadline.saturating_duration_since(Instant::now()))
    }

    /// The element, once it is in the page and shown (in the layout and not inside a `hidden`
    /// ancestor: what the UI's `hidden` toggling means), within `timeout`.
    fn shown(&self, css: &str, timeout: Duration) -> WebElement {
        let timeout = self.bounded(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.call(|| self.session.find(By::Css(css))) {
                Ok(el) => match self.execute(
                    "const e = arguments[0]; return !!e && !e.closest('[hidden]') && e.getClientRects().length > 0;",
                    &[self.arg(&el)],
                ) {
                    Ok(Value::Bool(true)) => return el,
                    Ok(_) => format!("{css} is in the page but not shown"),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "{css} not shown: waited {timeout:?} for {css}: {}",
                    last.trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// The element's reference, to pass to a script.
    fn arg(&self, el: &WebElement) -> Value {
        el.to_json()
            .unwrap_or_else(|e| self.fail(&format!("no element reference: {e}")))
    }

    /// Waits until what `read` sees satisfies `ok`; a failure shows the last thing seen.
    fn until_seen<T: std::fmt::Debug>(
        &self,
        what: &str,
        timeout: Duration,
        mut read: impl FnMut() -> T,
        ok: impl Fn(&T) -> bool,
    ) -> T {
        let timeout = self.bounded(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            let seen = read();
            if ok(&seen) {
                return seen;
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "timed out after {timeout:?} waiting for {what}; last seen: {seen:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn script(&self, script: &str) -> Value {
        self.execute(script, &[])
            .unwrap_or_else(|e| self.fail(&format!("WebDriver command failed: {e}")))
    }

    fn script_str(&self, script: &str) -> String {
        self.script(script).as_str().unwrap_or_default().to_owned()
    }

    fn value(&self, css: &str) -> String {
        let el = self.run(|| self.session.find(By::Css(css)));
        self.run(|| el.prop("value")).unwrap_or_default()
    }

    /// The element's rendered text (`innerText`). Not WebDriver's "Get Element Text":
    /// WebKitWebDriver answers "" for `#status-user` although it shows "alice" (its visibility
    /// atom misjudges the one-line, `overflow: hidden` status line).
    fn text(&self, css: &str) -> String {
        let el = self.run(|| self.session.find(By::Css(css)));
        let text = self
            .execute("return arguments[0].innerText;", &[self.arg(&el)])
            .unwrap_or_else(|e| self.fail(&format!("WebDriver command failed: {e}")));
        text.as_str().unwrap_or_default().to_owned()
    }

    fn incoming_texts(&self) -> Vec<String> {
        let value = self.script(
            "return [...document.querySelectorAll('li.message.incoming .text')].map(t => t.textContent);",
        );
        serde_json::from_value(value).unwrap_or_default()
    }

    fn hostile_item(&self) -> Value {
        let li = self
            .execute(
                "return [...document.querySelectorAll('li.message.incoming')].find(l => l.querySelector('.text').textContent === arguments[0]) || null;",
                &[json!(HOSTILE)],
            )
            .unwrap_or_else(|e| self.fail(&format!("WebDriver command failed: {e}")));
        if li.is_null() {
            self.fail("the hostile message is not in the window");
        }
        let el = WebElement::from_json(li.clone(), self.session.handle().clone())
            .unwrap_or_else(|e| self.fail(&format!("not an element reference: {li} ({e})")));
        self.execute(
            "const li = arguments[0]; return { text: li.querySelector('.text').textContent, \
             verified: !!li.querySelector('.badge.verified') };",
            &[self.arg(&el)],
        )
        .unwrap_or_else(|e| self.fail(&format!("WebDriver command failed: {e}")))
    }

    /// Returns once the page has painted two more frames.
    fn next_frames(&self) {
        self.run(|| async {
            self.session
                .execute_async(
                    "const done = arguments[arguments.length - 1]; \
                     requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
                    Vec::new(),
                )
                .await
                .map(drop)
        });
    }

    /// Sets the window's size and waits until the page has the new width.
    fn resize(&self, width: u32, height: u32) {
        self.run(|| self.session.set_window_rect(0, 0, width, height));
        let mut last = Value::Null;
        let deadline = Instant::now() + self.bounded(WAIT);
        while Instant::now() < deadline {
            last = self.script("return { w: window.innerWidth, h: window.innerHeight };");
            let w = last["w"].as_u64().unwrap_or(0);
            let h = last["h"].as_u64().unwrap_or(0);
            // Decorations, if a window manager drew any, come out of the rect.
            if w <= u64::from(width)
                && w + 64 >= u64::from(width)
                && h <= u64::from(height)
                && h + 96 >= u64::from(height)
            {
                // Let the layout settle and the window repaint before anything is measured
                // or captured (a screenshot right away can show the previous frame).
                self.next_frames();
                std::thread::sleep(Duration::from_millis(500));
                self.next_frames();
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let rect = self
            .call(|| self.session.get_window_rect())
            .map_or_else(|e| format!("(no rect: {e})"), |r| format!("{r:?}"));
        self.fail(&format!(
            "the window did not take {width}x{height}: WebDriver says {rect}, the page {last}"
        ));
    }

    fn save_screenshot(&self, name: &str) {
        let png = self.run(|| self.session.screenshot_as_png());
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let path = self.artifacts.join(name);
        std::fs::write(&path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        let _ = writeln!(std::io::stderr(), "screenshot: {}", path.display());
    }
}

/// Prints the tail of every log when the test fails.
struct LogsOnFailure(PathBuf);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut err = std::io::stderr();
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for path in paths {
                let _ = writeln!(err, "== {}\n{}", path.display(), tail(&path, 30));
            }
        }
    }
}
