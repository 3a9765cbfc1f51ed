//! A small synchronous WebDriver client for the browser tests. It starts `chromedriver` on
//! a free port, opens a headless Chromium session with a fresh profile, and speaks the W3C
//! WebDriver HTTP protocol with `ureq`. (The `headless_chrome` crate cannot build offline:
//! its build script downloads a browser.)
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The W3C key of an element reference in WebDriver JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where chromedriver is, if anywhere.
pub fn chromedriver_path() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("chromedriver"))
            .find(|p| p.is_file())
    });
    from_path.or_else(|| {
        ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    })
}

/// Whether browser tests can run. Without a browser they are skipped loudly, unless the
/// `CI` variable is set, where a missing browser is a failure.
pub fn browser_available() -> bool {
    let ok = Path::new(CHROMIUM).is_file() && chromedriver_path().is_some();
    if !ok {
        let msg = "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                   !!  BROWSER TESTS SKIPPED: /usr/bin/chromium or chromedriver missing. !!\n\
                   !!  Install them with: apt-get install chromium chromium-driver     !!\n\
                   !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n";
        eprintln!("{msg}");
        if std::env::var_os("CI").is_some() {
            panic!("browser tests must run in CI, but no browser is installed");
        }
    }
    ok
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A handle on one element of the page.
#[derive(Clone, Debug)]
pub struct Element(String);

/// One browser: its own chromedriver process, session and profile directory.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width` x `height`.
    pub fn launch(width: u32, height: u32) -> Browser {
        Browser::start(width, height, None)
    }

    /// A browser emulating a phone screen of `width` x `height` CSS pixels (a desktop
    /// window cannot be narrower than 500 pixels).
    pub fn launch_phone(width: u32, height: u32) -> Browser {
        let metrics =
            json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0}});
        Browser::start(width.max(500), height + 100, Some(metrics))
    }

    fn start(width: u32, height: u32, mobile: Option<Value>) -> Browser {
        let exe = chromedriver_path().expect("chromedriver is installed");
        let port = free_port();
        let driver = Command::new(exe)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent,
            _profile: profile,
        };
        browser.wait_for_driver();
        let args = json!([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            format!("--user-data-dir={}", browser._profile.path().display()),
            format!("--window-size={width},{height}"),
        ]);
        let mut args = args;
        if std::env::var_os("WHITEBEAT_BROWSER_DARK").is_some() {
            // For looking at the dark theme by hand.
            args.as_array_mut()
                .unwrap()
                .push(json!("--force-dark-mode"));
        }
        let mut options = json!({"binary": CHROMIUM, "args": args});
        if let Some(m) = mobile {
            options["mobileEmulation"] = m;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = browser.call("POST", "/session", Some(caps));
        browser.session = v["sessionId"].as_str().expect("a session id").to_string();
        browser
    }

    fn wait_for_driver(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.agent.get(&format!("{}/status", self.base)).call() {
                let v: Value = r.into_json().unwrap_or(Value::Null);
                if v["value"]["ready"] == json!(true) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One WebDriver command; returns its `value`, panicking on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{}", self.base, path);
        let req = self.agent.request(method, &url);
        let result = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let v: Value = r.into_json().unwrap_or(Value::Null);
                return Err(format!(
                    "{code} {}: {}",
                    v["value"]["error"].as_str().unwrap_or("?"),
                    v["value"]["message"].as_str().unwrap_or("")
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
        let v: Value = resp.into_json().map_err(|e| e.to_string())?;
        Ok(v["value"].clone())
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{}", self.session, rest)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    pub fn set_window_size(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.s("/window/rect"),
            Some(json!({"width": width, "height": height})),
        );
    }

    fn element_from(v: &Value) -> Option<Element> {
        v.get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .map(|id| Element(id.to_string()))
    }

    /// The first element matching `css`, if any (no waiting).
    pub fn try_find(&self, css: &str) -> Option<Element> {
        let body = json!({"using": "css selector", "value": css});
        self.try_call("POST", &self.s("/element"), Some(body))
            .ok()
            .and_then(|v| Self::element_from(&v))
    }

    /// Every element matching `css`.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let body = json!({"using": "css selector", "value": css});
        let v = self.call("POST", &self.s("/elements"), Some(body));
        v.as_array()
            .map(|a| a.iter().filter_map(Self::element_from).collect())
            .unwrap_or_default()
    }

    /// The first element matching `css`, waiting up to ten seconds for it to appear.
    pub fn find(&self, css: &str) -> Element {
        let mut found = None;
        self.wait_until(Duration::from_secs(10), &format!("element {css}"), || {
            found = self.try_find(css);
            found.is_some()
        });
        found.unwrap()
    }

    pub fn click(&self, el: &Element) {
        self.call(
            "POST",
            &self.s(&format!("/element/{}/click", el.0)),
            Some(json!({})),
        );
    }

    /// Clicks the element matching `css` (waiting for it).
    pub fn click_css(&self, css: &str) {
        let el = self.find(css);
        self.click(&el);
    }

    /// Empties an input or textarea.
    pub fn clear(&self, css: &str) {
        let el = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{}/clear", el.0)),
            Some(json!({})),
        );
    }

    /// Types into an element. `\u{E007}` is Enter, `\u{E008}` Shift.
    pub fn send_keys(&self, el: &Element, text: &str) {
        self.call(
            "POST",
            &self.s(&format!("/element/{}/value", el.0)),
            Some(json!({ "text": text })),
        );
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.send_keys(&el, text);
    }

    /// The rendered text of an element.
    pub fn text(&self, el: &Element) -> String {
        self.call("GET", &self.s(&format!("/element/{}/text", el.0)), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn text_of(&self, css: &str) -> String {
        let el = self.find(css);
        self.text(&el)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub fn exec(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs a JavaScript expression and returns its value.
    pub fn eval(&self, expr: &str) -> Value {
        self.exec(&format!("return ({expr});"), vec![])
    }

    /// Polls `cond` every 25 ms until it holds, panicking with `what` after `timeout`.
    pub fn wait_until(&self, timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if cond() {
                return;
            }
            if Instant::now() >= deadline {
                let url = self.eval("location.href");
                panic!("timed out after {timeout:?} waiting for {what} (page {url})");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until the JavaScript expression is truthy.
    pub fn wait_js(&self, timeout: Duration, expr: &str) {
        self.wait_until(timeout, expr, || {
            let v = self.eval(&format!("!!({expr})"));
            v == json!(true)
        });
    }

    /// Saves a PNG screenshot of the viewport.
    pub fn screenshot(&self, path: &Path) {
        let v = self.call("GET", &self.s("/screenshot"), None);
        let png = decode_base64(v.as_str().expect("base64 screenshot"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    /// Console messages of level SEVERE since the last call (JavaScript errors, CSP
    /// violations, failed loads), through chromedriver's log endpoint.
    pub fn severe_logs(&self) -> Vec<String> {
        let v = self
            .try_call("POST", &self.s("/se/log"), Some(json!({"type": "browser"})))
            .unwrap_or(Value::Null);
        v.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.try_call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (with padding) to bytes; enough for WebDriver screenshots.
pub fn decode_base64(s: &str) -> Vec<u8> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some((c - b'A') as u32),
            b'a'..=b'z' => Some((c - b'a' + 26) as u32),
            b'0'..=b'9' => Some((c - b'0' + 52) as u32),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter_map(val) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
