//! The embedded web UI: how it is served (size, headers, content types, caching, no path
//! escapes), and what people do with it in a real headless Chromium driven over WebDriver:
//! two users chatting live, older pages, the phone layout, the admin page, invites and
//! account administration, the "server unreachable" banner, and a page on another origin
//! using the API with credentials (CORS: a listed origin logs in, another is refused).
//! Browser tests skip loudly where no browser is installed, and fail there when `CI` is set.

use crate::support;
use crate::support::raw::{self, Reply};
use crate::support::webdriver::{self, Browser};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);
const ENTER: &str = "\u{E007}";
const SHIFT: &str = "\u{E008}";
const RELEASE_KEYS: &str = "\u{E000}";

/// Browsers are heavy on a small machine: one browser test at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
}

// ---------------------------------------------------------------------------------------
// How the assets are served (no browser needed)
// ---------------------------------------------------------------------------------------

/// A GET written byte for byte on a socket, so the path reaches the server exactly as
/// given (an HTTP client library would normalise `..` and `%2e%2e` away).
fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let mut sock = raw::connect(addr);
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let r = Reply::until_closed(&raw::read_until_closed(&mut sock));
    (r.status, r.head, r.body)
}

#[test]
fn embedded_assets_are_small_and_self_contained() {
    let files = whitebeat::server::assets::embedded_files();
    let total: usize = files.iter().map(|(_, len)| len).sum();
    assert!(total < 60 * 1024, "assets are {total} bytes, over 60 KB");
    let names: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
    for needed in ["index.html", "app.js", "style.css"] {
        assert!(
            names.contains(&needed),
            "{needed} is not embedded: {names:?}"
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    for (name, _) in &files {
        let text = std::fs::read_to_string(root.join(name)).unwrap();
        let head = text.trim_start();
        match Path::new(name).extension().and_then(|e| e.to_str()) {
            Some("js") => {
                assert!(head.starts_with("//"), "{name} must open with a comment");
                // User content goes in as text only.
                for banned in [
                    "innerHTML",
                    "outerHTML",
                    "insertAdjacentHTML",
                    "document.write",
                    "eval(",
                ] {
                    assert!(!text.contains(banned), "{name} uses {banned}");
                }
                for remote in ["http://", "https://"] {
                    let uses = text.matches(remote).count();
                    let svg_ns = text.matches("http://www.w3.org/2000/svg").count();
                    assert_eq!(
                        uses,
                        if remote == "http://" { svg_ns } else { 0 },
                        "{name} refers to {remote}"
                    );
                }
            }
            Some("css") => {
                assert!(head.starts_with("/*"), "{name} must open with a comment");
                assert!(!text.contains("url(http"), "{name} loads from the internet");
                assert!(!text.contains("@import"), "{name} imports");
            }
            Some("html") => {
                let after_doctype = head
                    .split_once('\n')
                    .map_or("", |(_, rest)| rest)
                    .trim_start();
                assert!(
                    after_doctype.starts_with("<!--"),
                    "{name} must open with a comment"
                );
                // The CSP forbids inline code and style: keep the markup free of both.
                assert!(!text.contains(" style="), "{name} has an inline style");
                assert!(!text.contains("<style"), "{name} has a style element");
                assert!(
                    !text.contains("javascript:"),
                    "{name} has a javascript: URL"
                );
                for tag in text.split("<script").skip(1) {
                    let open = tag.split('>').next().unwrap();
                    assert!(open.contains("src="), "{name} has an inline script");
                }
                assert!(!text.contains("http"), "{name} refers to another origin");
            }
            _ => {}
        }
    }
}

#[test]
fn ui_paths_serve_index_html_with_security_headers() {
    let s = support::start();
    for path in ["/", "/admin", "/admin/", "/some/client/route"] {
        let r = s.get(path, None);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type")
                .unwrap_or("")
                .starts_with("text/html"),
            "{path}: {:?}",
            r.header("content-type")
        );
        assert!(
            r.text.contains(r#"<script type="module" src="/app.js">"#),
            "{path}"
        );
        let csp = r.header("content-security-policy").unwrap_or("");
        assert_eq!(csp, whitebeat::server::assets::CSP, "{path}");
        for part in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{path}: CSP lacks {part}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
    }
    // A missing file is a 404, not the page.
    assert_eq!(s.get("/nope.js", None).status, 404);
}

#[test]
fn scripts_and_styles_have_their_content_types() {
    let s = support::start();
    let mut seen = 0;
    for (name, len) in whitebeat::server::assets::embedded_files() {
        let r = s.get(&format!("/{name}"), None);
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.text.len(), len, "{name}");
        let ct = r.header("content-type").unwrap_or("").to_string();
        if name.ends_with(".js") {
            assert!(ct.starts_with("text/javascript"), "{name}: {ct}");
            seen += 1;
        } else if name.ends_with(".css") {
            assert!(ct.starts_with("text/css"), "{name}: {ct}");
            seen += 1;
        }
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{name}"
        );
        assert!(r.header("content-security-policy").is_some(), "{name}");
    }
    assert!(seen >= 2, "expected JS and CSS files");
}

#[test]
fn etag_revalidation_is_a_304() {
    let s = support::start();
    for path in ["/app.js", "/style.css", "/", "/admin"] {
        let first = s.get(path, None);
        assert_eq!(first.status, 200);
        let etag = first.header("etag").expect("an ETag").to_string();
        let again = s.raw("GET", path, &[("If-None-Match", &etag)], b"");
        assert_eq!(again.status, 304, "{path}");
        assert!(again.text.is_empty(), "{path}: a 304 has no body");
        let stale = s.raw("GET", path, &[("If-None-Match", "\"other\"")], b"");
        assert_eq!(stale.status, 200, "{path}");
    }
}

#[test]
fn dotted_paths_never_return_files_from_disk() {
    let s = support::start();
    let addr = s.addr();
    let index = s.get("/", None).text;
    let paths = [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2E%2E/Cargo.toml",
        "/..%2fCargo.toml",
        "/%2e%2e%2fCargo.toml",
        "/assets/../Cargo.toml",
        "/../../../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..\\Cargo.toml",
        "/%252e%252e/Cargo.toml",
        "/....//Cargo.toml",
        "/Cargo.toml",
        "/src/main.rs",
        "/../src/main.rs",
        "//etc/passwd",
        "/assets/index.html/../../Cargo.toml",
    ];
    for path in paths {
        let (status, head, body) = raw_get(addr, path);
        let body = String::from_utf8_lossy(&body);
        assert!(
            [200, 400, 404].contains(&status),
            "{path}: status {status}\n{head}"
        );
        assert!(!body.contains("[package]"), "{path} leaked Cargo.toml");
        assert!(!body.contains("root:"), "{path} leaked /etc/passwd");
        assert!(!body.contains("fn main"), "{path} leaked a source file");
        if status == 200 {
            assert_eq!(body, index, "{path}: a 200 can only be the page itself");
        }
    }
}

#[test]
fn ui_dir_serves_its_own_files_only_with_the_index_as_fallback() {
    let outer = tempfile::tempdir().unwrap();
    let ui = outer.path().join("ui");
    std::fs::create_dir(&ui).unwrap();
    std::fs::write(
        ui.join("index.html"),
        "<!doctype html><p>other front end</p>",
    )
    .unwrap();
    std::fs::write(ui.join("app.js"), "// app\n").unwrap();
    std::fs::write(outer.path().join("secret.txt"), "not for the web").unwrap();
    let dir = ui.clone();
    let s = support::start_with(move |c| c.ui_dir = Some(dir));
    let addr = s.addr();

    let (status, head, body) = raw_get(addr, "/app.js");
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, b"// app\n");
    assert!(head.contains("text/javascript"), "{head}");
    let etag = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("ETag: ")
                .or_else(|| l.strip_prefix("etag: "))
        })
        .expect("an ETag")
        .trim()
        .to_string();
    let again = s.raw("GET", "/app.js", &[("If-None-Match", &etag)], b"");
    assert_eq!(again.status, 304);
    // The file changed on disk: a new ETag, served in full.
    std::fs::write(ui.join("app.js"), "// app, version 2\n").unwrap();
    let changed = s.raw("GET", "/app.js", &[("If-None-Match", &etag)], b"");
    assert_eq!(changed.status, 200);
    assert_eq!(changed.text, "// app, version 2\n");

    for route in ["/", "/chat/with/someone", "/admin"] {
        let (status, _, body) = raw_get(addr, route);
        assert_eq!(status, 200, "{route}");
        assert!(
            String::from_utf8_lossy(&body).contains("other front end"),
            "{route}"
        );
    }
    assert_eq!(raw_get(addr, "/missing.js").0, 404);
    for escape in ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt"] {
        let (status, _, body) = raw_get(addr, escape);
        assert!([200, 400, 404].contains(&status), "{escape}: {status}");
        assert!(
            !String::from_utf8_lossy(&body).contains("not for the web"),
            "{escape}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Browser helpers
// ---------------------------------------------------------------------------------------

fn visible(b: &Browser, css: &str) -> bool {
    b.exec(
        "const e = document.querySelector(arguments[0]); return !!e && e.getClientRects().length > 0;",
        vec![json!(css)],
    ) == json!(true)
}

fn wait_visible(b: &Browser, css: &str) {
    b.wait_until(WAIT, &format!("{css} to be visible"), || visible(b, css));
}

/// `textContent` of the first match, or None.
fn text(b: &Browser, css: &str) -> Option<String> {
    b.exec(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
        vec![json!(css)],
    )
    .as_str()
    .map(str::to_string)
}

fn count(b: &Browser, css: &str) -> usize {
    b.exec(
        "return document.querySelectorAll(arguments[0]).length;",
        vec![json!(css)],
    )
    .as_u64()
    .unwrap_or(0) as usize
}

fn wait_text(b: &Browser, css: &str, want: &str, timeout: Duration) {
    b.wait_until(timeout, &format!("{css} to read {want:?}"), || {
        text(b, css).as_deref() == Some(want)
    });
}

fn texts(b: &Browser, css: &str) -> Vec<String> {
    let v = b.exec(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent);",
        vec![json!(css)],
    );
    serde_json::from_value(v).unwrap_or_default()
}

fn last_message(b: &Browser) -> Option<String> {
    texts(b, "#msg-list .msg .text").pop()
}

fn wait_live(b: &Browser) {
    b.wait_until(WAIT, "the event stream to be up", || {
        b.exec(
            "return document.querySelector('#live-status').dataset.state;",
            vec![],
        ) == json!("up")
    });
}

/// Fills the sign-in form and presses "Sign up" or "Log in".
fn submit_auth(b: &Browser, user: &str, password: &str, signup: bool) {
    wait_visible(b, "#auth-form");
    b.clear("#auth-username");
    b.clear("#auth-password");
    b.type_into("#auth-username", user);
    b.type_into("#auth-password", password);
    b.click_css(if signup { "#signup-btn" } else { "#login-btn" });
}

fn sign_in(b: &Browser, base: &str, user: &str, signup: bool) {
    b.goto(base);
    submit_auth(b, user, "password123", signup);
    wait_visible(b, "#chat-view");
    wait_text(b, "#me-name", user, WAIT);
    wait_live(b);
}

/// No JavaScript errors or CSP violations in the console. API answers of 4xx that the UI
/// handles (the 401 of the "who am I" check when logged out, a wrong password) are fine.
fn no_page_errors(b: &Browser, who: &str) {
    let errors: Vec<String> = b
        .severe_logs()
        .into_iter()
        .filter(|e| !e.contains("/api/") || !e.contains("the server responded with a status of 4"))
        // While the server is down on purpose: refused connections, and the 503 a closing
        // server answers on connections that were still open.
        .filter(|e| !e.contains("ERR_CONNECTION_REFUSED"))
        .filter(|e| !e.contains("the server responded with a status of 503"))
        .collect();
    assert!(errors.is_empty(), "{who}'s console has errors: {errors:#?}");
}

/// The request log entries newer than `after`, read as an admin.
fn log_entries_after(s: &support::TestServer, admin: &str, after: i64) -> Vec<Value> {
    let stats = s.get("/api/admin/stats/", Some(admin));
    assert_eq!(stats.status, 200, "{}", stats.text);
    stats.body["recent_logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["id"].as_i64().unwrap() > after)
        .cloned()
        .collect()
}

fn newest_log_id(s: &support::TestServer, admin: &str) -> i64 {
    log_entries_after(s, admin, 0)
        .iter()
        .filter_map(|l| l["id"].as_i64())
        .max()
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Browser tests
// ---------------------------------------------------------------------------------------

#[test]
fn two_users_chat_live_in_two_browsers() {
    if !webdriver::browser_available() {
        return;
    }
    let _one = one_at_a_time();
    let s = support::start();
    let root = s.admin("root");
    let alice = Browser::launch(1200, 800);
    let bob = Browser::launch(1200, 800);
    sign_in(&alice, &s.base, "alice", true);
    sign_in(&bob, &s.base, "bob", true);
    bob.eval("window.__sameDocument = true");

    // Alice finds Bob in the picker and writes.
    alice.click_css("#new-chat");
    wait_visible(&alice, "#user-search");
    alice.type_into("#user-search", "bo");
    alice.wait_until(WAIT, "the search to show only bob", || {
        texts(&alice, "#user-results .user-pick") == ["bob"]
    });
    alice.click_css(r#".user-pick[data-user="bob"]"#);
    wait_visible(&alice, "#thread");
    wait_text(&alice, "#thread-title", "bob", WAIT);
    alice.type_into("#composer-input", &format!("Hello Bob{ENTER}"));
    alice.wait_until(WAIT, "alice's message in her thread", || {
        last_message(&alice).as_deref() == Some("Hello Bob")
    });
    wait_text(&alice, "#msg-list .msg.mine .tick", "✓", WAIT);
    assert_eq!(
        alice.eval("document.querySelector('#composer-input').value"),
        json!("")
    );

    // Bob's list shows the unread badge without a reload.
    wait_text(&bob, r#".conv[data-user="alice"] .badge"#, "1", WAIT);
    assert_eq!(
        text(&bob, r#".conv[data-user="alice"] .conv-preview"#).as_deref(),
        Some("Hello Bob")
    );
    assert_eq!(
        bob.eval("window.__sameDocument === true"),
        json!(true),
        "bob's page reloaded"
    );
    assert_eq!(bob.eval("document.title"), json!("(1) White Beat"));

    // Bob opens it: the badge clears, and Alice sees the read ticks live.
    bob.click_css(r#".conv[data-user="alice"]"#);
    bob.wait_until(WAIT, "the message in bob's thread", || {
        last_message(&bob).as_deref() == Some("Hello Bob")
    });
    bob.wait_until(WAIT, "the badge to clear", || {
        count(&bob, r#".conv[data-user="alice"] .badge"#) == 0
    });
    assert_eq!(bob.eval("document.title"), json!("White Beat"));
    wait_text(&alice, "#msg-list .msg.mine .tick", "✓✓", WAIT);
    wait_text(
        &alice,
        r#".conv[data-user="bob"] .conv-preview"#,
        "You: Hello Bob",
        WAIT,
    );

    // Bob types: Alice sees "typing…".
    bob.type_into("#composer-input", "Hi Alice");
    wait_text(&alice, "#typing", "bob is typing…", WAIT);

    // Bob sends: the reply reaches Alice's open thread well under a second. Both pages
    // stamp the moment (Enter pressed at Bob's, bubble added at Alice's) with the same
    // machine clock, so WebDriver's own round trips are not counted.
    alice.exec(
        "const want = arguments[0]; window.__arrived = null;
         new MutationObserver(() => {
           const last = [...document.querySelectorAll('#msg-list .msg .text')].pop();
           if (!window.__arrived && last && last.textContent === want) window.__arrived = Date.now();
         }).observe(document.querySelector('#msg-list'), {childList: true, subtree: true});",
        vec![json!("Hi Alice")],
    );
    bob.exec(
        "window.__enterAt = null;
         document.querySelector('#composer-input').addEventListener('keydown', (e) => {
           if (e.key === 'Enter' && window.__enterAt === null) window.__enterAt = Date.now();
         });",
        vec![],
    );
    let composer = bob.find("#composer-input");
    let sent = Instant::now();
    bob.send_keys(&composer, ENTER);
    alice.wait_until(WAIT, "the reply in alice's thread", || {
        last_message(&alice).as_deref() == Some("Hi Alice")
    });
    let seen_by_test = sent.elapsed();
    let arrived = alice
        .eval("window.__arrived")
        .as_f64()
        .expect("arrival stamped");
    let entered = bob
        .eval("window.__enterAt")
        .as_f64()
        .expect("Enter stamped");
    let took = arrived - entered;
    eprintln!("live delivery: {took} ms in the pages, {seen_by_test:?} seen through WebDriver");
    assert!(
        (0.0..500.0).contains(&took),
        "live delivery took {took} ms (Enter at bob's to the bubble at alice's)"
    );
    wait_text(&alice, "#typing", "", WAIT);
    // Alice had the thread open, so the reply is read at once: no badge for her.
    assert_eq!(count(&alice, r#".conv[data-user="bob"] .badge"#), 0);
    wait_text(&bob, "#msg-list .msg.mine .tick", "✓✓", WAIT);

    // With both streams up, neither page polls: a quiet spell adds nothing to the log
    // but the admin's own reads.
    std::thread::sleep(Duration::from_millis(1500)); // the log is written in batches
    let mark = newest_log_id(&s, &root);
    std::thread::sleep(Duration::from_secs(9)); // more than two polling periods
    let during: Vec<Value> = log_entries_after(&s, &root, mark)
        .into_iter()
        .filter(|l| l["endpoint"] != "/api/admin/stats")
        .collect();
    assert!(
        during.is_empty(),
        "requests while the stream was up: {during:#?}"
    );
    wait_live(&alice);
    wait_live(&bob);

    // Markup in a message is shown as text.
    let xss = "<img src=x onerror=alert(1)>";
    alice.type_into("#composer-input", &format!("{xss}{ENTER}"));
    bob.wait_until(WAIT, "the markup message at bob", || {
        last_message(&bob).as_deref() == Some(xss)
    });
    alice.wait_until(WAIT, "the markup message at alice", || {
        last_message(&alice).as_deref() == Some(xss)
    });
    wait_text(&bob, r#".conv[data-user="alice"] .conv-preview"#, xss, WAIT);
    for b in [&alice, &bob] {
        assert_eq!(
            count(b, "#msg-list img, #conv-list img, img"),
            0,
            "an img element was created"
        );
        assert_eq!(b.eval("typeof window.__xss"), json!("undefined"));
    }

    // Shift+Enter makes a new line; Enter sends.
    alice.type_into(
        "#composer-input",
        &format!("line one{SHIFT}{ENTER}{RELEASE_KEYS}line two{ENTER}"),
    );
    bob.wait_until(WAIT, "the two-line message", || {
        last_message(&bob).as_deref() == Some("line one\nline two")
    });

    // An empty or blank message cannot be sent.
    let before = count(&alice, "#msg-list .msg");
    assert_eq!(
        alice.eval("document.querySelector('#send-btn').disabled"),
        json!(true)
    );
    alice.type_into("#composer-input", &format!("   {ENTER}"));
    assert_eq!(
        alice.eval("document.querySelector('#send-btn').disabled"),
        json!(true)
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(count(&alice, "#msg-list .msg"), before);
    alice.clear("#composer-input");

    // A friendlier end for the screenshots, and a second conversation in the list.
    let lines = [
        (&alice, "Are we still on for dinner tonight?"),
        (&bob, "Yes! 7 pm at the usual place?"),
        (&alice, "Perfect, see you there"),
    ];
    for (from, line) in lines {
        from.type_into("#composer-input", &format!("{line}{ENTER}"));
        alice.wait_until(WAIT, line, || last_message(&alice).as_deref() == Some(line));
    }
    assert_eq!(s.send(&root, "alice", "Welcome to White Beat!").status, 201);
    wait_text(&alice, r#".conv[data-user="root"] .badge"#, "1", WAIT);
    assert_eq!(
        texts(&alice, ".conv .conv-name"),
        ["root", "bob"],
        "newest conversation first"
    );
    wait_text(&alice, "#thread-presence", "online", WAIT);
    bob.type_into("#composer-input", "On my way");
    wait_text(&alice, "#typing", "bob is typing…", WAIT);
    alice.screenshot(&screenshots().join("chat.png"));
    alice.set_window_size(960, 640);
    std::thread::sleep(Duration::from_millis(300));
    alice.screenshot(&screenshots().join("chat-small.png"));

    no_page_errors(&alice, "alice");
    no_page_errors(&bob, "bob");
}

#[test]
fn older_pages_sign_in_errors_and_phone_layout() {
    if !webdriver::browser_available() {
        return;
    }
    let _one = one_at_a_time();
    let s = support::start();
    let carol = s.user("carol");
    s.user("dave");
    for i in 1..=120 {
        let r = s.send(&carol, "dave", &format!("message {i}"));
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let b = Browser::launch_phone(390, 760);
    b.goto(&s.base);
    assert_eq!(b.eval("window.innerWidth"), json!(390));

    // The server's own error messages show next to the form.
    submit_auth(&b, "dave", "wrong-password", false);
    wait_text(&b, "#auth-error", "Invalid username or password", WAIT);
    submit_auth(&b, "carol", "password123", true);
    wait_text(&b, "#auth-error", "Username already exists", WAIT);
    b.screenshot(&screenshots().join("login.png"));
    submit_auth(&b, "dave", "password123", false);
    wait_visible(&b, "#chat-view");
    wait_live(&b);

    // Phone width: the list alone, then the thread alone.
    wait_text(&b, r#".conv[data-user="carol"] .badge"#, "120", WAIT);
    assert!(visible(&b, "#list-pane"));
    assert!(!visible(&b, "#thread-pane"));
    b.click_css(r#".conv[data-user="carol"]"#);
    wait_visible(&b, "#thread");
    assert!(
        !visible(&b, "#list-pane"),
        "the list hides behind the thread on a phone"
    );
    b.wait_until(WAIT, "the newest page", || {
        count(&b, "#msg-list .msg") == 50
    });
    let shown = texts(&b, "#msg-list .msg .text");
    assert_eq!(shown.first().map(String::as_str), Some("message 71"));
    assert_eq!(shown.last().map(String::as_str), Some("message 120"));
    assert!(visible(&b, "#load-older"));

    // Scrolling to the top loads older pages, oldest first, until there are no more.
    for want in [100, 120] {
        b.eval("document.querySelector('#messages').scrollTop = 0");
        b.wait_until(WAIT, &format!("{want} messages"), || {
            count(&b, "#msg-list .msg") == want
        });
    }
    let all = texts(&b, "#msg-list .msg .text");
    let expected: Vec<String> = (1..=120).map(|i| format!("message {i}")).collect();
    assert_eq!(all, expected);
    b.wait_until(WAIT, "the load-older button to go", || {
        !visible(&b, "#load-older")
    });
    b.eval("document.querySelector('#messages').scrollTop = 1e9");
    b.screenshot(&screenshots().join("phone.png"));

    // Back to the list.
    b.click_css("#back");
    wait_visible(&b, "#list-pane");
    assert!(!visible(&b, "#thread-pane"));
    assert_eq!(count(&b, r#".conv[data-user="carol"] .badge"#), 0);
    no_page_errors(&b, "dave");
}

#[test]
fn admin_page_shows_stats_and_changes_admins() {
    if !webdriver::browser_available() {
        return;
    }
    let _one = one_at_a_time();
    let s = support::start();
    let root = s.admin("root");
    let erin = s.user("erin");
    s.user("frank");
    assert_eq!(s.send(&erin, "frank", "hi frank").status, 201);
    assert_eq!(s.send(&erin, "root", "hello admin").status, 201);

    let b = Browser::launch(1200, 900);
    b.goto(&s.base);
    submit_auth(&b, "root", "password123", false);
    wait_visible(&b, "#chat-view");
    wait_visible(&b, "#nav-admin");
    b.click_css("#nav-admin");
    wait_visible(&b, "#admin-dash");
    assert_eq!(b.eval("location.pathname"), json!("/admin"));
    b.wait_until(WAIT, "five stat cards", || count(&b, "#cards .stat") == 5);
    let cards = texts(&b, "#cards .stat");
    assert!(cards.iter().any(|c| c == "Total users3"), "{cards:?}");
    assert!(cards.iter().any(|c| c == "Total messages2"), "{cards:?}");
    assert!(cards.iter().any(|c| c.starts_with("Revenue$")), "{cards:?}");
    assert_eq!(count(&b, "#chart-growth svg rect.bar"), 6);
    assert_eq!(count(&b, "#chart-usage svg rect.bar"), 6);
    assert!(count(&b, "#logs-table tbody tr") > 0);
    wait_text(
        &b,
        r#"#users-table tr[data-user="erin"] .role"#,
        "User",
        WAIT,
    );

    // Promote erin: her row says Admin, and the server agrees.
    b.click_css(r#"#users-table tr[data-user="erin"] button"#);
    wait_text(
        &b,
        r#"#users-table tr[data-user="erin"] .role"#,
        "Admin",
        WAIT,
    );
    wait_text(&b, "#admin-msg", "erin is now an admin", WAIT);
    let v = s.post(
        "/api/verify-admin/",
        Some(&root),
        json!({"username": "erin"}),
    );
    assert_eq!(v.body["is_admin"], true, "{}", v.text);
    b.screenshot(&screenshots().join("admin.png"));

    // Demote erin again, then try to remove the last admin: the 409 shows.
    b.click_css(r#"#users-table tr[data-user="erin"] button"#);
    wait_text(
        &b,
        r#"#users-table tr[data-user="erin"] .role"#,
        "User",
        WAIT,
    );
    b.click_css(r#"#users-table tr[data-user="root"] button"#);
    b.wait_until(WAIT, "the last-admin refusal", || {
        text(&b, "#admin-msg").is_some_and(|t| t.contains("last admin"))
    });
    wait_text(
        &b,
        r#"#users-table tr[data-user="root"] .role"#,
        "Admin",
        WAIT,
    );

    // Log out; frank (not an admin) opening /admin is refused and gets no data.
    b.click_css("#logout");
    wait_visible(&b, "#auth-form");
    submit_auth(&b, "frank", "password123", false);
    wait_visible(&b, "#chat-view");
    assert!(!visible(&b, "#nav-admin"));
    b.goto(&format!("{}/admin", s.base));
    wait_visible(&b, "#admin-refusal");
    wait_text(&b, "#admin-refusal h1", "Admins only", WAIT);
    assert!(!visible(&b, "#admin-dash"));
    assert_eq!(count(&b, "#cards .stat"), 0);
    assert_eq!(count(&b, "#users-table tbody tr"), 0);
    no_page_errors(&b, "root/frank");
}

#[test]
fn admin_invites_someone_by_link_then_resets_and_deactivates_them() {
    if !webdriver::browser_available() {
        return;
    }
    let _one = one_at_a_time();
    let s = support::start_with(|c| c.signup = whitebeat::config::SignupMode::Invite);
    s.admin("root");

    // The admin makes an invite on the admin page and gets a link to send.
    let admin = Browser::launch(1200, 1000);
    admin.goto(&s.base);
    submit_auth(&admin, "root", "password123", false);
    wait_visible(&admin, "#nav-admin");
    admin.click_css("#nav-admin");
    wait_visible(&admin, "#invite-form");
    wait_text(
        &admin,
        "#signup-mode",
        "Sign-up needs an invite: create a code below and send its link.",
        WAIT,
    );
    admin.type_into("#invite-note", "for Nina");
    admin.click_css("#invite-form button[type=submit]");
    wait_visible(&admin, "#new-invite-link");
    let link = admin
        .eval("document.querySelector('#new-invite-link').value")
        .as_str()
        .unwrap()
        .to_string();
    let code = link.rsplit('=').next().unwrap().to_string();
    assert_eq!(link, format!("{}/?invite={code}", s.base));
    wait_text(
        &admin,
        &format!(r#"#invites-table tr[data-code="{code}"] .state"#),
        "usable",
        WAIT,
    );

    // The invitee opens the link: the code is filled in, and signing up works.
    let nina = Browser::launch(1000, 800);
    nina.goto(&link);
    wait_visible(&nina, "#invite-field");
    nina.screenshot(&screenshots().join("signup-invite.png"));
    assert_eq!(
        nina.eval("document.querySelector('#auth-invite').value"),
        json!(code)
    );
    submit_auth(&nina, "nina", "password123", true);
    wait_visible(&nina, "#chat-view");
    wait_text(&nina, "#me-name", "nina", WAIT);
    assert_eq!(
        nina.eval("location.search"),
        json!(""),
        "the spent code leaves the URL"
    );

    // The admin sees her account and the spent invite; their own row offers no Deactivate.
    admin.click_css("#admin-refresh");
    let row = r#"#users-table tr[data-user="nina"]"#;
    wait_text(&admin, &format!("{row} .state"), "Active", WAIT);
    assert_eq!(count(&admin, &format!("{row} .actions button")), 3);
    assert_eq!(
        texts(
            &admin,
            r#"#users-table tr[data-user="root"] .actions button"#
        ),
        ["Remove admin", "Reset password"]
    );
    wait_text(
        &admin,
        &format!(r#"#invites-table tr[data-code="{code}"] .state"#),
        "used up",
        WAIT,
    );
    admin.exec(
        "document.querySelector('#invite-form').scrollIntoView();",
        vec![],
    );
    admin.screenshot(&screenshots().join("admin-invites.png"));

    // A password reset shows the generated password once; it works.
    admin.click_css(&format!("{row} button.reset"));
    admin.wait_until(WAIT, "the new password", || {
        text(&admin, "#admin-msg").is_some_and(|t| t.contains("New password: "))
    });
    let msg = text(&admin, "#admin-msg").unwrap();
    let password = msg
        .rsplit("New password: ")
        .next()
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(s.login("nina", &password).status, 200, "{msg}");

    // Deactivated: the row says so and she cannot log in; reactivated, she can.
    admin.click_css(&format!("{row} .actions button:nth-child(2)"));
    wait_text(&admin, &format!("{row} .state"), "Inactive", WAIT);
    assert_eq!(s.login("nina", &password).status, 401);
    admin.screenshot(&screenshots().join("admin-accounts.png"));
    nina.goto(&s.base);
    wait_visible(&nina, "#auth-form");
    admin.click_css(&format!("{row} .actions button:nth-child(2)"));
    wait_text(&admin, &format!("{row} .state"), "Active", WAIT);
    assert_eq!(s.login("nina", &password).status, 200);
    no_page_errors(&admin, "root");
    no_page_errors(&nina, "nina");

    // On a closed server the sign-in page offers no sign-up.
    let closed = support::start_with(|c| c.signup = whitebeat::config::SignupMode::Closed);
    nina.goto(&closed.base);
    wait_visible(&nina, "#signup-note");
    assert!(!visible(&nina, "#signup-btn"));
    assert!(!visible(&nina, "#invite-field"));
    assert!(text(&nina, "#signup-note").unwrap().contains("closed"));
}

#[test]
fn banner_while_server_unreachable_then_recovers() {
    if !webdriver::browser_available() {
        return;
    }
    let _one = one_at_a_time();
    let mut s = support::start();
    let gina = s.user("gina");
    s.user("hank");
    let b = Browser::launch(1000, 700);
    b.goto(&s.base);
    submit_auth(&b, "hank", "password123", false);
    wait_visible(&b, "#chat-view");
    wait_live(&b);
    assert!(!visible(&b, "#offline-banner"));

    // The server goes away: the stream drops, polling finds nobody, the banner shows.
    let addr = s.addr();
    s.stop();
    b.wait_until(Duration::from_secs(20), "the offline banner", || {
        visible(&b, "#offline-banner")
    });
    assert_eq!(
        b.exec(
            "return document.querySelector('#live-status').dataset.state;",
            vec![]
        ),
        json!("down")
    );

    // Back on the same address and database: the banner goes and the stream resumes.
    let mut config = support::test_config(s.dir.path());
    config.bind = addr;
    s.handle = Some(whitebeat::serve(config).expect("server restarts"));
    // The test's own client must not reuse a keep-alive connection of the stopped server's
    // (a server stopped in-process leaves its connection threads to answer 503 until they
    // time out; a real process takes its sockets with it).
    s.client = support::Client::new(s.base.clone());
    b.wait_until(Duration::from_secs(40), "the banner to go", || {
        !visible(&b, "#offline-banner")
    });
    b.wait_until(Duration::from_secs(40), "the stream to resume", || {
        b.exec(
            "return document.querySelector('#live-status').dataset.state;",
            vec![],
        ) == json!("up")
    });
    assert_eq!(s.send(&gina, "hank", "are you back?").status, 201);
    wait_text(&b, r#".conv[data-user="gina"] .badge"#, "1", WAIT);
    no_page_errors(&b, "hank");
}

// ---------------------------------------------------------------------------------------
// Cross-origin use of the API
// ---------------------------------------------------------------------------------------

/// A page on an origin of its own: a tiny HTTP server on another port of 127.0.0.1 that
/// answers every request with `html`. Stops when dropped.
struct OtherOrigin {
    origin: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OtherOrigin {
    fn serve(html: &'static str) -> OtherOrigin {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for sock in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut sock) = sock else { continue };
                let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && sock.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let _ = write!(
                    sock,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{html}",
                    html.len()
                );
            }
        });
        OtherOrigin {
            origin,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for OtherOrigin {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.origin.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Logs in to the API named by `?api=` with credentials, as a web app on another origin
/// does, then lists the conversations with the session cookie and with the bearer token.
/// The JSON (HTTP statuses, or the error a refused `fetch` rejects with) goes into `#out`.
const CROSS_ORIGIN_PAGE: &str = r#"<!doctype html>
<title>another origin</title>
<pre id="out"></pre>
<script>
(async () => {
  const q = new URLSearchParams(location.search);
  const api = q.get('api');
  const out = {};
  try {
    const login = await fetch(api + '/api/login/', {
      method: 'POST',
      credentials: 'include',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({username: q.get('username'), password: q.get('password')}),
    });
    out.login = login.status;
    const token = (await login.json()).token;
    const byCookie = await fetch(api + '/api/conversations/', {credentials: 'include'});
    out.cookie = byCookie.status;
    out.conversations = (await byCookie.json()).conversations.map(c => c.other_user.username);
    const byToken = await fetch(api + '/api/conversations/', {
      headers: {'Authorization': 'Bearer ' + token},
    });
    out.bearer = byToken.status;
  } catch (e) {
    out.error = String(e);
  }
  document.getElementById('out').textContent = JSON.stringify(out);
})();
</script>
"#;

/// Opens the page of `page` and returns what its script reported.
fn cross_origin_outcome(b: &Browser, page: &OtherOrigin, api: &str, user: &str) -> Value {
    let url = format!(
        "{}/?api={api}&username={user}&password=password123",
        page.origin
    );
    b.goto(&url);
    let mut out = Value::Null;
    b.wait_until(WAIT, "the page's report", || {
        out = text(b, "#out")
            .filter(|t| !t.is_empty())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        !out.is_null()
    });
    out
}

#[test]
fn a_listed_origin_logs_in_across_origins_and_another_is_refused() {
    if !webdriver::browser_available() {
        return;
    }
    let _one = one_at_a_time();
    let allowed = OtherOrigin::serve(CROSS_ORIGIN_PAGE);
    let refused = OtherOrigin::serve(CROSS_ORIGIN_PAGE);
    let listed = allowed.origin.clone();
    let s = support::start_with(|c| c.cors_origins = vec![listed]);
    let alice = s.user("alice");
    s.user("bob");
    assert_eq!(s.send(&alice, "bob", "hi").status, 201);
    let b = Browser::launch(800, 600);

    // The preflights of the login (a JSON body) and of the bearer token's request, and the
    // credentialed answers, all pass the browser's CORS checks: each carries
    // Access-Control-Allow-Origin once (a second copy makes the browser refuse it).
    let out = cross_origin_outcome(&b, &allowed, &s.base, "bob");
    let logs = b.severe_logs();
    assert_eq!(
        out,
        json!({"login": 200, "cookie": 200, "conversations": ["alice"], "bearer": 200}),
        "from {}: console {logs:#?}",
        allowed.origin
    );

    // An origin not in the list: the preflight answers without CORS headers, so the
    // browser never sends the login and the fetch rejects.
    let out = cross_origin_outcome(&b, &refused, &s.base, "alice");
    assert!(
        out["error"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "from {}: {out}",
        refused.origin
    );
    assert!(out.get("login").is_none(), "{out}");
    let root = s.admin("root");
    let stats = s.get("/api/admin/stats/", Some(&root));
    let alice_logins = stats.body["recent_logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["endpoint"] == "/api/login" && l["user"] == "alice")
        .count();
    assert_eq!(alice_logins, 1, "only s.user's own login: {}", stats.text);
}
