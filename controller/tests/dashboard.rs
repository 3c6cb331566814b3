//! The dashboard end to end, in a real headless Chromium driven over the W3C WebDriver
//! protocol (chromedriver, plain HTTP+JSON), against a real controller on 127.0.0.1:0 fed
//! with `policies/examples/bank.yaml` and agent reports posted through the agent API.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`; the test fails (it does not
//! skip) when they are missing, because CI installs them. Screenshots are written to
//! `$CARGO_TARGET_TMPDIR/dashboard-screenshots/` (or `$DASHBOARD_SCREENSHOTS`).

mod api_support;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api_support::Running;
use serde_json::{Value, json};
use wansteer_controller::auth::TokensFile;
use wansteer_wire::session::{
    Ack, AckOutcome, ClassDemand, LineHealth, LineMeasurement, Register, Report,
};

const BANK: &str = include_str!("../../policies/examples/bank.yaml");
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the page may take to show a change (the sampler looks every 500 ms).
const WITHIN: Duration = Duration::from_secs(10);

/// The WebDriver element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver, killed when dropped (also on panic).
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver leads its own process group, so the browsers it started go too,
        // also when a failed assertion skipped `quit`.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Driver {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(binary).exists(),
                "{binary} is missing: install the Debian packages `chromium chromium-driver` \
                 (scripts/install-deps does); the dashboard test needs a real browser"
            );
        }
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let child = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            session: None,
            _profile: tempfile::tempdir().unwrap(),
        };
        let started = Instant::now();
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .ok()
                .and_then(|r| r.status().is_success().then_some(()));
            if ready.is_some() {
                break;
            }
            assert!(started.elapsed() < WITHIN, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = driver._profile.path().display().to_string();
        let session = driver
            .call(
                reqwest::Method::POST,
                "/session",
                json!({ "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                 "--disable-dev-shm-usage", "--window-size=1300,1100",
                                 "--no-first-run", "--disable-extensions",
                                 format!("--user-data-dir={profile}")],
                    },
                    "goog:loggingPrefs": { "browser": "ALL" },
                }}}),
            )
            .await;
        driver.session = Some(session["sessionId"].as_str().unwrap().to_string());
        driver
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().await.expect("chromedriver answers");
        let status = response.status();
        let body: Value = response.json().await.expect("chromedriver speaks JSON");
        assert!(status.is_success(), "WebDriver {path}: {status} {body}");
        body["value"].clone()
    }

    async fn session(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let session = self.session.as_ref().unwrap();
        self.call(method, &format!("/session/{session}{path}"), body)
            .await
    }

    async fn goto(&self, url: &str) {
        self.session(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    async fn js(&self, script: &str, args: Value) -> Value {
        self.session(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
        .await
    }

    /// Runs an async `script` that ends by calling `done(result)`.
    async fn js_async(&self, script: &str) -> Value {
        let script = format!("const done = arguments[arguments.length - 1]; {script}");
        self.session(
            reqwest::Method::POST,
            "/execute/async",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .session(
                reqwest::Method::POST,
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {found}"))
            .to_string()
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.session(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            json!({}),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.session(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Polls a JavaScript expression until it is truthy; returns its value.
    async fn wait_for(&self, what: &str, expression: &str) -> Value {
        let started = Instant::now();
        loop {
            let value = self.js(&format!("return ({expression});"), json!([])).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if started.elapsed() > WITHIN {
                let page = self.js("return document.body.innerText;", json!([])).await;
                panic!("{what}: not within {WITHIN:?}; page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The browser console since the last call (chromedriver's log endpoint).
    async fn console(&self) -> Vec<Value> {
        self.session(
            reqwest::Method::POST,
            "/se/log",
            json!({ "type": "browser" }),
        )
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
    }

    async fn assert_no_console_errors(&self, page: &str) {
        let errors: Vec<Value> = self
            .console()
            .await
            .into_iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .collect();
        assert!(errors.is_empty(), "console errors on {page}: {errors:#?}");
    }

    async fn screenshot(&self, name: &str) {
        let png = self
            .session(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let bytes = base64_decode(png.as_str().unwrap());
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        eprintln!("screenshot: {}", path.display());
    }

    async fn quit(mut self) {
        if self.session.is_some() {
            self.session(reqwest::Method::DELETE, "", Value::Null).await;
            self.session = None;
        }
    }
}

fn screenshot_dir() -> PathBuf {
    std::env::var_os("DASHBOARD_SCREENSHOTS").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots"),
        PathBuf::from,
    )
}

/// Standard base64 (what WebDriver screenshots use); small, to avoid a dependency.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|c| *c != b'=' && *c != b'\n').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

// ----- the controller side -----

fn bank_sites() -> Vec<(String, Vec<String>)> {
    let checked = wansteer_policies::check_source("bank.yaml", BANK).expect("bank.yaml is valid");
    checked
        .policy
        .sites
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.lines.iter().map(|l| l.name.clone()).collect(),
            )
        })
        .collect()
}

fn measurement(line: &str, health: LineHealth, rtt_ms: f64, loss_percent: f64) -> LineMeasurement {
    LineMeasurement {
        line: line.into(),
        rtt_ms,
        loss_percent,
        loss_bounds_percent: None,
        jitter_ms: 1.5,
        samples: 100,
        health,
    }
}

/// Posts one report of `site` through the agent API, as its agent would.
async fn report(running: &Running, site: &str, lines: Vec<LineMeasurement>) {
    report_with_demand(running, site, lines, vec![]).await;
}

/// Per-class demand measured on `line` (no destination: it only informs).
fn demand(class: &str, line: &str, bps: u64) -> ClassDemand {
    ClassDemand {
        class: class.into(),
        line: Some(line.into()),
        destination: None,
        bps,
    }
}

async fn report_with_demand(
    running: &Running,
    site: &str,
    lines: Vec<LineMeasurement>,
    demand: Vec<ClassDemand>,
) {
    let report = Report {
        site: site.into(),
        at_ms: wansteer_controller::service::now_ms(),
        lines,
        events: vec![],
        demand,
    };
    let (status, body) = running
        .send(
            reqwest::Method::POST,
            "/api/v1/agent/report",
            Some(running.agent(site)),
            serde_json::to_string(&report).unwrap(),
        )
        .await;
    assert_eq!(status, 204, "report of {site} refused: {body}");
}

/// `site`'s agent registers and acks the rule set published for it, as a real agent does.
async fn register_and_ack(running: &Running, site: &str) {
    let register = Register {
        protocol: wansteer_wire::PROTOCOL_VERSION,
        site: site.into(),
        agent_version: "test-agent 1".into(),
        lines: vec![],
        running: None,
    };
    let (status, reply) = running
        .send(
            reqwest::Method::POST,
            "/api/v1/agent/register",
            Some(running.agent(site)),
            serde_json::to_string(&register).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let published = &reply["published"];
    let ack = Ack {
        site: site.into(),
        version: published["version"]
            .as_u64()
            .expect("a rule set is published"),
        hash: published["hash"].as_str().unwrap().into(),
        outcome: AckOutcome::Applied,
    };
    let (status, body) = running
        .send(
            reqwest::Method::POST,
            "/api/v1/agent/ack",
            Some(running.agent(site)),
            serde_json::to_string(&ack).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Every line of every site healthy.
async fn all_healthy(running: &Running, sites: &[(String, Vec<String>)]) {
    for (site, lines) in sites {
        let lines = lines
            .iter()
            .map(|l| measurement(l, LineHealth::Up, 20.0, 0.0))
            .collect();
        report(running, site, lines).await;
    }
}

/// How many samples the history endpoint holds for a line.
async fn history_len(running: &Running, site: &str, line: &str) -> usize {
    let (status, body) = running
        .get(
            &format!("/api/v1/lines/{site}/{line}/history"),
            Some(running.viewer()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["samples"].as_array().unwrap().len()
}

async fn start_bank() -> (tempfile::TempDir, Running, Vec<(String, Vec<String>)>) {
    let sites = bank_sites();
    let tokens = TokensFile::generate(sites.iter().map(|(s, _)| s.as_str()));
    let dir = tempfile::tempdir().unwrap();
    let running = api_support::start(dir.path(), BANK, tokens, 0).await;
    (dir, running, sites)
}

/// The colour the browser actually paints a topology line with.
fn stroke_of(site: &str, line: &str) -> String {
    format!(
        "(() => {{ const el = document.querySelector('#topology line.line[data-site=\"{site}\"][data-line=\"{line}\"]'); \
         return el ? el.getAttribute('data-health') + ' ' + getComputedStyle(el).stroke : null; }})()"
    )
}

const GREEN: &str = "rgb(46, 158, 68)";
const AMBER: &str = "rgb(224, 161, 0)";
const RED: &str = "rgb(210, 58, 58)";

async fn sign_in(driver: &Driver, base: &str, token: &str) {
    driver.goto(&format!("{base}/dashboard/")).await;
    driver
        .js("sessionStorage.clear(); location.hash = '';", json!([]))
        .await;
    driver.goto(&format!("{base}/dashboard/")).await;
    driver
        .wait_for("the sign-in form", "document.getElementById('token')")
        .await;
    driver.type_into("#token", token).await;
    driver.click("#sign-in").await;
    driver
        .wait_for("signed in", "!document.getElementById('nav').hidden")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_the_network_live_and_a_viewer_cannot_change_the_policy() {
    let (_dir, running, sites) = start_bank().await;
    running
        .eventually("rule sets published", || async {
            running.controller.published().len() == sites.len()
        })
        .await;
    register_and_ack(&running, "branch-leeds").await;
    all_healthy(&running, &sites).await;
    let line_count: usize = sites.iter().map(|(_, l)| l.len()).sum();
    let driver = Driver::start().await;

    // A wrong token is refused on the sign-in page.
    driver.goto(&running.url("/")).await;
    driver
        .wait_for("the sign-in form", "document.getElementById('token')")
        .await;
    driver.type_into("#token", "not-a-token").await;
    driver.click("#sign-in").await;
    driver
        .wait_for("the refusal", "document.getElementById('login-error')")
        .await;
    // The refused request itself logs a 401 (which also shows the log is being read).
    let refused = driver.console().await;
    assert!(
        refused
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|m| m.contains("401"))),
        "the browser log shows the refused sign-in: {refused:?}"
    );

    // Topology: every line drawn, all green, and the page is live.
    sign_in(&driver, &running.base, running.viewer()).await;
    let drawn = driver
        .wait_for(
            "every line drawn",
            &format!(
                "document.querySelectorAll('#topology line.line').length === {line_count} && \
                 document.querySelectorAll('#topology line.line').length"
            ),
        )
        .await;
    assert_eq!(drawn, json!(line_count));
    driver
        .wait_for("all lines green", "[...document.querySelectorAll('#topology line.line')].every(l => l.dataset.health === 'up')")
        .await;
    assert_eq!(
        driver
            .js(
                &format!("return {};", stroke_of("branch-leeds", "mpls")),
                json!([])
            )
            .await,
        json!(format!("up {GREEN}"))
    );
    driver
        .wait_for(
            "the event stream",
            "document.getElementById('live').classList.contains('on')",
        )
        .await;
    let leeds_box = driver
        .js("return document.querySelector('#topology g.site[data-site=\"branch-leeds\"]').textContent;", json!([]))
        .await;
    assert!(
        leeds_box.as_str().unwrap().contains("in sync v1"),
        "{leeds_box}"
    );
    let york_box = driver
        .js("return document.querySelector('#topology g.site[data-site=\"branch-york\"]').textContent;", json!([]))
        .await;
    assert!(
        york_box.as_str().unwrap().contains("no agent"),
        "{york_box}"
    );
    driver.screenshot("topology-healthy").await;
    driver.assert_no_console_errors("topology").await;

    // One line degrades, another goes down: the open page turns them amber and red.
    let leeds: Vec<String> = sites
        .iter()
        .find(|(s, _)| s == "branch-leeds")
        .unwrap()
        .1
        .clone();
    let before = history_len(&running, "branch-leeds", "mpls").await;
    let reported = Instant::now();
    report(
        &running,
        "branch-leeds",
        leeds
            .iter()
            .map(|l| match l.as_str() {
                "mpls" => measurement(l, LineHealth::Degraded, 95.0, 3.1),
                _ => measurement(l, LineHealth::Up, 20.0, 0.0),
            })
            .collect(),
    )
    .await;
    report(
        &running,
        "branch-city",
        vec![
            measurement("mpls", LineHealth::Up, 18.0, 0.0),
            measurement("internet", LineHealth::Down, 0.0, 100.0),
            measurement("lte", LineHealth::Up, 60.0, 0.2),
        ],
    )
    .await;
    let shown = driver
        .wait_for(
            "the degraded line amber",
            &format!(
                "(s => s && s.startsWith('degraded') && s)({})",
                stroke_of("branch-leeds", "mpls")
            ),
        )
        .await;
    assert_eq!(shown, json!(format!("degraded {AMBER}")));
    // A figure for docs/benchmarks/dashboard.md, not a pass/fail bound (WITHIN is that).
    eprintln!(
        "figure: degraded line shown amber {} ms after its report",
        reported.elapsed().as_millis()
    );
    let shown = driver
        .wait_for(
            "the failed line red",
            &format!(
                "(s => s && s.startsWith('down') && s)({})",
                stroke_of("branch-city", "internet")
            ),
        )
        .await;
    assert_eq!(shown, json!(format!("down {RED}")));
    assert_eq!(
        driver
            .js(
                &format!("return {};", stroke_of("branch-leeds", "internet")),
                json!([])
            )
            .await,
        json!(format!("up {GREEN}")),
        "the other lines stay green"
    );
    let row = driver
        .js("return document.querySelector('#lines tr[data-site=\"branch-leeds\"][data-line=\"mpls\"]').innerText;", json!([]))
        .await;
    assert!(
        row.as_str().unwrap().contains("3.10%"),
        "the table shows the loss: {row}"
    );
    driver.screenshot("topology-degraded").await;

    // Line detail: a few more measurements arrive, with the classes' throughput; the charts
    // have a point for each.
    let mut expected = before + 1;
    for (rtt, voice_bps) in [(110.0, 64_000), (130.0, 96_000)] {
        running
            .eventually("the sampler took the last report", || async {
                history_len(&running, "branch-leeds", "mpls").await >= expected
            })
            .await;
        report_with_demand(
            &running,
            "branch-leeds",
            vec![measurement("mpls", LineHealth::Degraded, rtt, 2.0)],
            vec![
                demand("voice", "mpls", voice_bps),
                demand("bulk", "mpls", 2_000_000),
            ],
        )
        .await;
        expected += 1;
    }
    driver
        .js("location.hash = '#/line/branch-leeds/mpls';", json!([]))
        .await;
    let points = driver
        .wait_for(
            "the RTT chart's points",
            &format!(
                "(n => n >= {expected} && n)(document.querySelectorAll('svg.chart[data-metric=\"rtt_ms\"] circle.point').length)"
            ),
        )
        .await;
    assert!(points.as_u64().unwrap() >= expected as u64);
    let throughput = driver
        .wait_for(
            "the throughput chart's points per class",
            "(c => c && c.querySelectorAll('g.class-series[data-class=\"voice\"] circle.point').length >= 2 && \
              [...c.querySelectorAll('g.class-series')].map(g => g.dataset.class + ':' + \
                g.querySelectorAll('circle.point').length + ':' + \
                g.querySelector('circle.point:last-of-type title').textContent).join('|'))\
             (document.querySelector('svg#throughput'))",
        )
        .await;
    let throughput = throughput.as_str().unwrap();
    assert!(
        throughput.contains("bulk:") && throughput.contains("2 Mbit/s"),
        "bulk has its own series: {throughput}"
    );
    assert!(
        throughput.contains("voice:") && throughput.contains("96 kbit/s"),
        "voice's latest point is its last report: {throughput}"
    );
    let threshold = driver
        .js("return document.querySelector('svg.chart[data-metric=\"loss_percent\"] .threshold-label').textContent;", json!([]))
        .await;
    assert!(
        threshold.as_str().unwrap().contains("SLA"),
        "the loss chart draws an SLA line: {threshold}"
    );
    let on_line = driver
        .wait_for(
            "the classes on the line",
            "(t => t && t.innerText)(document.querySelector('#line-classes tr[data-class=\"voice\"]'))",
        )
        .await;
    assert!(on_line.as_str().unwrap().contains("primary"), "{on_line}");
    driver.screenshot("line-detail").await;
    driver
        .js(
            "document.getElementById('throughput').scrollIntoView();",
            json!([]),
        )
        .await;
    driver.screenshot("line-throughput").await;
    driver.assert_no_console_errors("line detail").await;

    // The topology draws the line's load: 96 kbit/s + 2 Mbit/s.
    driver.js("location.hash = '#/topology';", json!([])).await;
    let load = driver
        .wait_for(
            "the line's load on the graph",
            "(l => l && l.dataset.loadBps !== '0' && l.dataset.loadBps)\
             (document.querySelector('#topology line[data-site=\"branch-leeds\"][data-line=\"mpls\"]'))",
        )
        .await;
    assert_eq!(load, json!("2096000"));
    let load_cell = driver
        .js("return document.querySelector('#lines tr[data-site=\"branch-leeds\"][data-line=\"mpls\"] td.load').innerText;", json!([]))
        .await;
    assert!(
        load_cell.as_str().unwrap().contains("2.1 Mbit/s"),
        "the table shows the load: {load_cell}"
    );

    // Classes: every class of the policy, with where it runs.
    driver.js("location.hash = '#/classes';", json!([])).await;
    driver
        .wait_for(
            "the classes",
            "document.querySelectorAll('.card.class').length === 8",
        )
        .await;
    let voice = driver
        .wait_for(
            "voice placed at branch-leeds",
            "(r => r && r.innerText)(document.querySelector('.card.class[data-class=\"voice\"] tr[data-site=\"branch-leeds\"]'))",
        )
        .await;
    assert!(voice.as_str().unwrap().contains("mpls"), "{voice}");
    driver.screenshot("classes").await;

    // Events: decisions and the startup policy, filterable by class.
    driver.js("location.hash = '#/events';", json!([])).await;
    driver
        .wait_for(
            "events",
            "document.querySelectorAll('#events-body tr').length > 8",
        )
        .await;
    driver
        .js("const s = document.getElementById('filter-class'); s.value = 'voice'; s.dispatchEvent(new Event('change'));", json!([]))
        .await;
    let filtered = driver
        .js(
            "return [...document.querySelectorAll('#events-body tr')].map(r => r.innerText);",
            json!([]),
        )
        .await;
    let filtered = filtered.as_array().unwrap();
    assert!(!filtered.is_empty());
    assert!(
        filtered
            .iter()
            .all(|r| r.as_str().unwrap().contains("voice")),
        "the class filter keeps only voice: {filtered:?}"
    );
    driver.screenshot("events").await;
    driver.assert_no_console_errors("classes and events").await;

    // Policy as a viewer: history shown, no upload, and the API refuses a change anyway.
    driver.js("location.hash = '#/policy';", json!([])).await;
    driver
        .wait_for(
            "the policy history",
            "document.querySelectorAll('#versions tbody tr').length === 1",
        )
        .await;
    assert_eq!(
        driver.js("return !!document.getElementById('upload') || !!document.getElementById('policy-text');", json!([])).await,
        json!(false),
        "a viewer gets no upload form"
    );
    driver.assert_no_console_errors("policy (viewer)").await;
    let refused = driver
        .js_async(
            "fetch('/api/v1/policy', { method: 'PUT', body: 'name: x', headers: \
             { Authorization: 'Bearer ' + sessionStorage.getItem('wansteer.token') } }) \
             .then(r => done(r.status));",
        )
        .await;
    assert_eq!(refused, json!(403));
    assert_eq!(running.controller.policy().0.version, 1);
    driver.screenshot("policy-viewer").await;

    // Policy as an admin: a bad policy shows its errors with line and column, changes nothing.
    sign_in(&driver, &running.base, running.admin()).await;
    driver.js("location.hash = '#/policy';", json!([])).await;
    driver
        .wait_for("the upload form", "document.getElementById('policy-text')")
        .await;
    let bad = BANK.replacen(
        "  - name: branch-leeds\n    kind: branch",
        "  - name: branch-leeds\n    kind: castle",
        1,
    );
    assert_ne!(bad, BANK);
    let bad_line = bad
        .lines()
        .position(|l| l.contains("kind: castle"))
        .unwrap()
        + 1;
    driver
        .js(
            "document.getElementById('policy-file').value = 'bank.yaml'; \
             const t = document.getElementById('policy-text'); t.value = arguments[0]; \
             t.dispatchEvent(new Event('input'));",
            json!([bad]),
        )
        .await;
    driver.click("#validate").await;
    let location = driver
        .wait_for("the diagnostics", "(c => c && c.textContent)(document.querySelector('#policy-result .diag code.location'))")
        .await;
    let location = location.as_str().unwrap().to_string();
    let prefix = format!("bank.yaml:{bad_line}:");
    assert!(
        location.starts_with(&prefix)
            && location[prefix.len()..]
                .parse::<usize>()
                .is_ok_and(|c| c >= 1),
        "the error points at line {bad_line} with a column: {location}"
    );
    let shown = driver
        .js(
            "return document.getElementById('policy-result').innerText;",
            json!([]),
        )
        .await;
    assert!(
        shown.as_str().unwrap().contains("castle"),
        "the message names the bad value: {shown}"
    );
    assert_eq!(
        driver
            .js(
                "return document.getElementById('apply').disabled;",
                json!([])
            )
            .await,
        json!(true),
        "a bad policy cannot be applied"
    );
    driver.screenshot("policy-admin-errors").await;
    assert_eq!(running.controller.policy().0.version, 1);
    driver.console().await; // the refused validation logs its 422; start clean after it

    // A good change: preview the diff, apply, and the history shows the new version.
    let good = BANK.replacen("name: examplebank-wan", "name: examplebank-wan-2", 1);
    driver
        .js(
            "const t = document.getElementById('policy-text'); t.value = arguments[0]; \
             t.dispatchEvent(new Event('input'));",
            json!([good]),
        )
        .await;
    driver.click("#diff-button").await;
    driver
        .wait_for(
            "the diff",
            "document.querySelectorAll('#diff li').length > 0",
        )
        .await;
    let line_diff = driver
        .wait_for(
            "the line diff",
            "(d => d && [...d.querySelectorAll('.add')].map(x => x.textContent).join('|'))(document.getElementById('textdiff'))",
        )
        .await;
    assert!(
        line_diff
            .as_str()
            .unwrap()
            .contains("+ name: examplebank-wan-2"),
        "the added line is shown: {line_diff}"
    );
    driver.screenshot("policy-admin-diff").await;
    driver.click("#apply").await;
    driver
        .wait_for(
            "the new version in the history",
            "document.querySelectorAll('#versions tbody tr').length === 2",
        )
        .await;
    assert_eq!(running.controller.policy().0.version, 2);
    driver.screenshot("policy-admin-applied").await;

    // Rolling back: v1's row loads it into the editor with its diff against v2; applying
    // makes it v3, with v1's text.
    driver
        .wait_for(
            "v1's rollback button",
            "document.querySelector('#versions button.rollback[data-version=\"1\"]')",
        )
        .await;
    // Found and clicked in one script: the history is redrawn on every live refresh, so a
    // WebDriver element found a moment earlier may already be gone.
    driver
        .js(
            "document.querySelector('#versions button.rollback[data-version=\"1\"]').click();",
            json!([]),
        )
        .await;
    let undone = driver
        .wait_for(
            "the rollback's diff",
            "(d => d && [...d.querySelectorAll('.del')].map(x => x.textContent).join('|'))(document.getElementById('textdiff'))",
        )
        .await;
    assert!(
        undone
            .as_str()
            .unwrap()
            .contains("- name: examplebank-wan-2"),
        "the rollback previews what it undoes: {undone}"
    );
    assert_eq!(
        driver
            .js(
                "return document.getElementById('apply').textContent;",
                json!([])
            )
            .await,
        "Roll back to v1"
    );
    driver.screenshot("policy-admin-rollback").await;
    driver.click("#apply").await;
    driver
        .wait_for(
            "the rollback in the history",
            "document.querySelectorAll('#versions tbody tr').length === 3",
        )
        .await;
    let (record, _) = running.controller.policy();
    assert_eq!(record.version, 3);
    assert_eq!(record.text, BANK, "v3 is v1's text again");
    assert!(
        driver
            .wait_for(
                "the rollback's confirmation",
                "(p => p && p.textContent)(document.querySelector('#policy-result .ok'))",
            )
            .await
            .as_str()
            .unwrap()
            .contains("Rolled back to v1: now v3"),
    );
    driver.assert_no_console_errors("policy (admin)").await;

    // Events as an admin: the audit log's policy changes and the refused sign-in.
    driver.js("location.hash = '#/events';", json!([])).await;
    let audited = driver
        .wait_for(
            "the audit entries",
            "(rows => rows.some(r => r.includes('by admin (audit)')) && \
                      rows.some(r => r.includes('token refused')) && rows.join('\\n'))\
             ([...document.querySelectorAll('#events-body tr')].map(r => r.innerText))",
        )
        .await;
    let audited = audited.as_str().unwrap();
    assert!(
        audited.contains("examplebank-wan-2"),
        "the policy change says what changed: {audited}"
    );
    driver.screenshot("events-admin-audit").await;
    driver.assert_no_console_errors("events (admin)").await;

    driver.quit().await;
    running.stop().await;
}

/// A hub and `branches` branches with two lines each.
fn wide_policy(branches: usize) -> String {
    let mut text = String::from(
        "name: wide\nsites:\n  - name: hub\n    kind: hub\n    lan: [10.0.0.0/16]\n    lines:\n      \
         - { name: mpls, transport: mpls, interface: wan0, up: 1gbit, down: 1gbit }\n",
    );
    for n in 0..branches {
        text.push_str(&format!(
            "  - name: branch-{n}\n    kind: branch\n    lan: [10.{}.{}.0/24]\n    lines:\n      \
             - {{ name: mpls, transport: mpls, interface: wan0, gateway: 192.0.2.1, up: 50mbit, down: 50mbit }}\n      \
             - {{ name: lte, transport: lte, interface: wan1, gateway: 198.51.100.1, up: 20mbit, down: 20mbit }}\n",
            1 + n / 200,
            n % 200
        ));
    }
    text.push_str(
        "classes:\n  - name: voice\n    priority: 1\n    dscp: EF\n    \
         sla: { latency: 150ms, loss: 1%, jitter: 30ms }\n  - name: default\n    priority: 7\n",
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_network_draws_only_the_branches_in_trouble() {
    let policy = wide_policy(120);
    let names: Vec<String> = std::iter::once("hub".to_string())
        .chain((0..120).map(|n| format!("branch-{n}")))
        .collect();
    let tokens = TokensFile::generate(names.iter().map(String::as_str));
    let dir = tempfile::tempdir().unwrap();
    let running = api_support::start(dir.path(), &policy, tokens, 0).await;
    report(
        &running,
        "hub",
        vec![measurement("mpls", LineHealth::Up, 20.0, 0.0)],
    )
    .await;
    report(
        &running,
        "branch-77",
        vec![
            measurement("mpls", LineHealth::Down, 0.0, 100.0),
            measurement("lte", LineHealth::Up, 60.0, 0.0),
        ],
    )
    .await;
    let driver = Driver::start().await;
    sign_in(&driver, &running.base, running.viewer()).await;
    driver
        .wait_for(
            "the note on hidden branches",
            "(t => t && t.textContent)(document.getElementById('hidden-branches'))",
        )
        .await;
    let drawn = driver
        .js("return [...document.querySelectorAll('#topology g.site')].map(g => g.dataset.site).sort();", json!([]))
        .await;
    assert_eq!(drawn, json!(["branch-77", "hub"]));
    assert_eq!(
        driver
            .js(
                &format!("return {};", stroke_of("branch-77", "mpls")),
                json!([])
            )
            .await,
        json!(format!("down {RED}"))
    );
    let note = driver
        .js(
            "return document.getElementById('hidden-branches').textContent;",
            json!([]),
        )
        .await;
    assert_eq!(
        note,
        json!("119 branches without a degraded or down line not drawn")
    );
    let first = driver
        .js(
            "return document.querySelector('#lines tbody tr').dataset.site;",
            json!([]),
        )
        .await;
    assert_eq!(first, json!("branch-77"), "the table lists trouble first");
    let rows = driver
        .js(
            "return document.querySelectorAll('#lines tbody tr').length;",
            json!([]),
        )
        .await;
    assert_eq!(rows, json!(1 + 120 * 2), "the table still lists every line");
    driver.screenshot("topology-large").await;
    driver.assert_no_console_errors("large topology").await;
    driver.quit().await;
    running.stop().await;
}
