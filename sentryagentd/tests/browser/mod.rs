//! Headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`), for the console's browser tests.
//!
//! [`Browser::start`] runs `chromedriver` on a free loopback port in a
//! process group of its own, opens one headless Chromium session with the
//! browser's console and network logs on, and answers `None` (after a
//! `SKIPPED` line) when either program is missing; with
//! `SENTRYAGENT_REQUIRE_SERVICES=1` it panics instead. Dropping the
//! [`Browser`] kills the whole process group (driver and browser), so no
//! process outlives a test, whatever it did.
//!
//! The WebDriver protocol is plain JSON over HTTP; the few commands these
//! tests need are written here on the workspace's HTTP client rather than
//! pulling in a WebDriver crate. Every wait is bounded.
//!
//! [`Browser::check`] fails the test on any console error (a refused
//! resource, a Content-Security-Policy violation, a script error) and on
//! any request the page made to an address outside loopback.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The browser binary.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The driver binary.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The desktop width of the screenshots.
pub const DESKTOP: u32 = 1280;
/// The phone width of the screenshots.
pub const PHONE: u32 = 375;

/// Whether CI asked for every service (then a missing browser fails).
fn required() -> bool {
    std::env::var("SENTRYAGENT_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A headless Chromium session and its driver.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    _profile: tempfile::TempDir,
    /// Console messages and requests already checked.
    seen_logs: Vec<String>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver leads its own process group; the browser and its
        // helpers are in it.
        let pgid = self.driver.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One message of the browser's console.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, ...
    pub level: String,
    /// The text.
    pub message: String,
}

impl Browser {
    /// Starts the driver and a browser session, or prints `SKIPPED <test>`
    /// and answers `None` when Chromium or its driver is not installed
    /// (panics instead under `SENTRYAGENT_REQUIRE_SERVICES=1`).
    pub async fn start(test: &str) -> Option<Browser> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).exists() {
                assert!(
                    !required(),
                    "{test}: {bin} is missing (SENTRYAGENT_REQUIRE_SERVICES=1; \
                     install chromium and chromium-driver)"
                );
                eprintln!("SKIPPED {test}: {bin} is missing (install chromium chromium-driver)");
                return None;
            }
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .unwrap();
        let port = free_port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.args([&format!("--port={port}"), "--allowed-ips=127.0.0.1"])
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let driver = cmd.spawn().unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            driver,
            http,
            session: String::new(),
            _profile: profile,
            seen_logs: Vec::new(),
        };
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = b.http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{test}: chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile_dir = b._profile.path().display().to_string();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"pageLoad": 20000, "script": 20000, "implicit": 0},
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    "--no-default-browser-check", "--disable-extensions",
                    "--disable-background-networking", "--disable-sync",
                    "--disable-component-update", "--disable-default-apps",
                    "--disable-domain-reliability", "--metrics-recording-only",
                    "--no-proxy-server", "--hide-scrollbars",
                    // Names other than the loopback ones resolve to nothing.
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                    format!("--user-data-dir={profile_dir}"),
                    format!("--window-size={DESKTOP},900"),
                ],
                "perfLoggingPrefs": {"enableNetwork": true, "enablePage": false},
            },
        }}});
        let r = b
            .http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("{test}: no WebDriver session: {v}"))
            .to_owned();
        b.session = format!("{base}/session/{id}");
        Some(b)
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {v}"
        );
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.cmd(reqwest::Method::GET, path, None).await
    }

    /// Opens `url` and waits for the page's load event.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    /// The address the browser shows.
    pub async fn url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page and answers its return value.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.js(
            "return document.body ? document.body.innerText : ''",
            json!([]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        self.js(
            "return document.querySelectorAll(arguments[0]).length",
            json!([css]),
        )
        .await
        .as_u64()
        .unwrap_or(0) as usize
    }

    /// The text of the first element matching `css`, if any.
    pub async fn text_of(&self, css: &str) -> Option<String> {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null",
            json!([css]),
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// Waits (at most `limit`) until `script` answers `true`; panics with
    /// `what` otherwise.
    pub async fn wait_for(&self, what: &str, script: &str, args: Value, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.js(script, args.clone()).await == Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited {limit:?} for {what} at {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (at most `limit`) until an element matches `css`.
    pub async fn wait_css(&self, css: &str, limit: Duration) {
        self.wait_for(
            css,
            "return document.querySelector(arguments[0]) !== null",
            json!([css]),
            limit,
        )
        .await;
    }

    /// Waits (at most `limit`) for the address to start with `prefix`.
    pub async fn wait_url(&self, prefix: &str, limit: Duration) {
        self.wait_for(
            &format!("an address starting with {prefix}"),
            "return location.href.startsWith(arguments[0])",
            json!([prefix]),
            limit,
        )
        .await;
    }

    /// Types `text` into the element matching `css` (cleared first).
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.post(&format!("/element/{el}/clear"), json!({})).await;
        self.post(&format!("/element/{el}/value"), json!({"text": text}))
            .await;
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.post(&format!("/element/{el}/click"), json!({})).await;
    }

    /// The WebDriver id of the element matching `css` (waits 5 s at most).
    pub async fn find(&self, css: &str) -> String {
        self.wait_css(css, Duration::from_secs(5)).await;
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    /// Sets the viewport to `width` px (a phone's metrics below 600 px).
    pub async fn viewport(&self, width: u32) {
        let mobile = width < 600;
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": if mobile { 812 } else { 900 },
                   "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    /// A Chrome DevTools command through the driver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.post("/goog/cdp/execute", json!({"cmd": cmd, "params": params}))
            .await
    }

    /// Screenshots the whole page at `width` px into
    /// `target/console-screenshots/<name>-<width>.png`; answers the path.
    pub async fn screenshot(&self, name: &str, width: u32) -> PathBuf {
        self.viewport(width).await;
        // Let the layout settle at the new width.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let v = self
            .cdp(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().expect("screenshot data"))
            .unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}-{width}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Both widths of [`screenshot`](Self::screenshot), then back to the
    /// desktop width.
    pub async fn screenshots(&self, name: &str) {
        self.screenshot(name, PHONE).await;
        self.screenshot(name, DESKTOP).await;
    }

    async fn log(&self, kind: &str) -> Vec<Value> {
        let v = self.post("/se/log", json!({"type": kind})).await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// The console messages since the last call.
    pub async fn console(&self) -> Vec<LogEntry> {
        self.log("browser")
            .await
            .into_iter()
            .map(|e| LogEntry {
                level: e["level"].as_str().unwrap_or_default().to_owned(),
                message: e["message"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// The URLs the page requested since the last call.
    pub async fn requests(&self) -> Vec<String> {
        let mut urls = Vec::new();
        for e in self.log("performance").await {
            let Some(text) = e["message"].as_str() else {
                continue;
            };
            let Ok(m) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if m["message"]["method"] == "Network.requestWillBeSent"
                && let Some(u) = m["message"]["params"]["request"]["url"].as_str()
            {
                urls.push(u.to_owned());
            }
        }
        urls
    }

    /// What went wrong since the last look: console errors (CSP
    /// violations included) and requests outside loopback.
    pub async fn problems(&mut self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .console()
            .await
            .into_iter()
            .filter(|e| e.level == "SEVERE" || e.message.contains("Content Security Policy"))
            .map(|e| format!("console {}: {}", e.level, e.message))
            .collect();
        let requests = self.requests().await;
        problems.extend(
            requests
                .iter()
                .filter(|u| !is_loopback(u))
                .map(|u| format!("request outside loopback: {u}")),
        );
        self.seen_logs.extend(requests);
        problems
    }

    /// Fails on any of [`problems`](Self::problems).
    pub async fn check(&mut self) {
        let problems = self.problems().await;
        assert!(problems.is_empty(), "in the browser: {problems:#?}");
    }

    /// Sets a cookie on the current page's origin (`HttpOnly`, path `/`).
    pub async fn add_cookie(&self, name: &str, value: &str) {
        self.post(
            "/cookie",
            json!({"cookie": {"name": name, "value": value, "path": "/", "httpOnly": true}}),
        )
        .await;
    }

    /// Ends the session (the drop kills the processes in any case).
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

/// Whether a request URL stays on this machine (loopback, the browser's
/// own resources, or a URL with no network part).
pub fn is_loopback(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        // data:, blob:, about:
        return url.starts_with("data:") || url.starts_with("blob:") || url.starts_with("about:");
    };
    if !matches!(scheme, "http" | "https" | "ws" | "wss") {
        // The browser's own pages and resources, not the network.
        return matches!(
            scheme,
            "chrome" | "chrome-untrusted" | "chrome-extension" | "devtools"
        );
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `target/console-screenshots` of the workspace.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target")
        .join("console-screenshots")
}
