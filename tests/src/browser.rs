//! Chromium driven through WebDriver: Debian's `chromedriver` as a child process
//! ([`ChromeDriver`]) and one headless Chromium per participant in its own WebDriver session,
//! through [`fantoccini`] ([`Browser`]).
//!
//! Chromium is started by chromedriver, not by the harness, so each [`Browser`] gets a fresh,
//! unique `--user-data-dir` and, when it drops, the harness kills (by PID) the processes whose
//! command line carries it ([`crate::process::pids_with_arg`]). Drop the browsers before their
//! driver (declare them after it).
//!
//! The page's DOM contract the harness reads ([`PageView`]): `<body data-state>`, `#status`,
//! `#waiting-count`, `#countdown`, `#game-id`, `#player-index[data-player-index]`, `#message`,
//! `#error`, `#subject-id`. [`BrowserOptions`] adds what the benchmarks need: more disabled
//! Chromium features and a script run before the page's own in every document (Chrome DevTools
//! through chromedriver, [`Browser::cdp`]).
//!
//! Environment: `PAIRLAB_CHROMEDRIVER` (default `chromedriver` on `PATH`), `PAIRLAB_CHROMIUM`
//! (default `/usr/bin/chromium`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::io;
use crate::http::http_get;
use crate::ports::free_port;
use crate::process::{kill_pid, pids_with_arg, Process, Wait, WAIT};
use crate::{HarnessError, Result, WorkDir};

/// A running `chromedriver --port=<free port>` (output to `<work>/chromedriver.log`). Killed by
/// its PID when dropped; drop the [`Browser`]s first (declare them after it).
#[derive(Debug)]
pub struct ChromeDriver {
    process: Process,
    port: u16,
}

impl ChromeDriver {
    /// Starts chromedriver (`PAIRLAB_CHROMEDRIVER`, default `chromedriver`) and waits for its
    /// `/status` to answer 200.
    ///
    /// # Errors
    /// [`HarnessError::NoChromeDriver`] when it cannot be started, [`HarnessError::Exited`] or
    /// [`HarnessError::Timeout`] when it does not become ready.
    pub async fn start(work: &WorkDir) -> Result<ChromeDriver> {
        let bin = std::env::var("PAIRLAB_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port()?;
        let mut command = Command::new(&bin);
        command.arg(format!("--port={port}"));
        let process = match Process::spawn(
            "chromedriver",
            &mut command,
            &work.join("chromedriver.log"),
            "",
        ) {
            Ok(process) => process,
            Err(HarnessError::Io { source, .. }) => {
                return Err(HarnessError::NoChromeDriver { bin, source })
            }
            Err(e) => return Err(e),
        };
        let mut driver = ChromeDriver { process, port };
        let wait = Wait::new("chromedriver's /status", WAIT);
        loop {
            driver.process.check_running()?;
            if let Ok((200, _)) = http_get(port, "/status").await {
                return Ok(driver);
            }
            wait.tick(driver.process.log_tail(20)).await?;
        }
    }

    /// The WebDriver endpoint, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// chromedriver's PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// chromedriver's log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }
}

/// What the harness reads from the page (the DOM contract). Texts are trimmed `textContent`;
/// `None` when the element is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PageView {
    /// `<body data-state>`: `connecting`, `waitroom`, `probing`, `game`, `timeout`, `error`,
    /// `closed`.
    pub state: Option<String>,
    /// `#status`.
    pub status: Option<String>,
    /// `#waiting-count`.
    pub waiting: Option<String>,
    /// `#countdown`.
    pub countdown: Option<String>,
    /// `#game-id`.
    pub game_id: Option<String>,
    /// `#player-index`'s text.
    pub player_number: Option<String>,
    /// `#player-index`'s `data-player-index` (0-based).
    pub player_index: Option<String>,
    /// `#message`.
    pub message: Option<String>,
    /// `#error`.
    pub error: Option<String>,
    /// `#subject-id`.
    pub subject_id: Option<String>,
    /// `location.href`.
    pub href: Option<String>,
}

impl PageView {
    /// Whether `data-state` is `state`.
    pub fn is(&self, state: &str) -> bool {
        self.state.as_deref() == Some(state)
    }
}

const PAGE_VIEW_JS: &str = r#"
const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent.trim() : null; };
const pi = document.querySelector('#player-index');
return {
  state: document.body ? (document.body.getAttribute('data-state')) : null,
  status: text('#status'),
  waiting: text('#waiting-count'),
  countdown: text('#countdown'),
  game_id: text('#game-id'),
  player_number: pi ? pi.textContent.trim() : null,
  player_index: pi ? pi.getAttribute('data-player-index') : null,
  message: text('#message'),
  error: text('#error'),
  subject_id: text('#subject-id'),
  href: location.href,
};
"#;

/// The Chromium command line of every test browser: headless, as root
/// (`--no-sandbox`), nothing that talks to the internet, host ICE candidates not hidden behind
/// mDNS names (`WebRtcHideLocalIpsWithMdns`), and a fresh profile (appended by [`Browser::open`]).
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--window-size=1024,768",
];

/// The `--disable-features` of [`CHROMIUM_ARGS`]: host ICE candidates not hidden behind mDNS
/// names.
const DISABLED_FEATURES: &str = "WebRtcHideLocalIpsWithMdns";

/// [`CHROMIUM_ARGS`] with `more_disabled` features added to its one `--disable-features`
/// (Chromium honours only the last `--disable-features` it is given).
pub fn chromium_args(more_disabled: &[String]) -> Vec<String> {
    let mut features = vec![DISABLED_FEATURES.to_owned()];
    features.extend(more_disabled.iter().cloned());
    CHROMIUM_ARGS
        .iter()
        .map(|a| match a.strip_prefix("--disable-features=") {
            Some(_) => format!("--disable-features={}", features.join(",")),
            None => (*a).to_owned(),
        })
        .collect()
}

/// What a [`Browser`] gets beyond [`CHROMIUM_ARGS`] and a fresh profile.
#[derive(Debug, Clone, Default)]
pub struct BrowserOptions {
    /// Chromium features to disable as well (`BackForwardCache`, …).
    pub disable_features: Vec<String>,
    /// A script run before the page's own in every document (CDP
    /// `Page.addScriptToEvaluateOnNewDocument`).
    pub init_script: Option<String>,
}

/// A chromedriver command fantoccini has no method for: Chrome DevTools through
/// `POST /session/{id}/goog/cdp/execute` (chromedriver's extension), body `{cmd, params}`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> std::result::Result<url::Url, url::ParseError> {
        let session = session_id.ok_or(url::ParseError::EmptyHost)?;
        base_url.join(&format!("session/{session}/goog/cdp/execute"))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// One headless Chromium process, driven through its own WebDriver session. Its Chromium
/// processes (found by their unique `--user-data-dir`) are killed by PID when dropped.
pub struct Browser {
    name: String,
    client: Option<fantoccini::Client>,
    profile_dir: PathBuf,
    states_seen: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("name", &self.name)
            .field("profile_dir", &self.profile_dir)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts a new Chromium (`PAIRLAB_CHROMIUM`, default `/usr/bin/chromium`) with
    /// [`CHROMIUM_ARGS`] and a fresh profile `<work>/profile-<name>`, in a new WebDriver session
    /// of `driver`.
    ///
    /// # Errors
    /// [`HarnessError::Io`] for the profile folder, [`HarnessError::NewSession`] when Chromium
    /// does not start.
    pub async fn open(driver: &ChromeDriver, work: &WorkDir, name: &str) -> Result<Browser> {
        Self::open_with(driver, work, name, &BrowserOptions::default()).await
    }

    /// Like [`Browser::open`], with `options`: more disabled features, and a script to run
    /// before the page's own in every document.
    ///
    /// # Errors
    /// As [`Browser::open`]; [`HarnessError::Cmd`] when the script cannot be installed.
    pub async fn open_with(
        driver: &ChromeDriver,
        work: &WorkDir,
        name: &str,
        options: &BrowserOptions,
    ) -> Result<Browser> {
        let profile_dir = work.join(&format!("profile-{name}"));
        if profile_dir.exists() {
            fs::remove_dir_all(&profile_dir)
                .map_err(io(format!("remove {}", profile_dir.display())))?;
        }
        fs::create_dir_all(&profile_dir)
            .map_err(io(format!("create {}", profile_dir.display())))?;
        let chromium =
            std::env::var("PAIRLAB_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let mut args = chromium_args(&options.disable_features);
        args.push(format!("--user-data-dir={}", profile_dir.display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        // From here on, a failure must still kill whatever Chromium started.
        let mut browser = Browser {
            name: name.to_owned(),
            client: None,
            profile_dir,
            states_seen: Mutex::new(Vec::new()),
        };
        let client = fantoccini::ClientBuilder::native()
            .capabilities(caps)
            .connect(&driver.url())
            .await
            .map_err(|source| HarnessError::NewSession {
                name: name.to_owned(),
                log_path: driver.log_path().display().to_string(),
                source: Box::new(source),
            })?;
        browser.client = Some(client);
        if let Some(script) = &options.init_script {
            browser
                .cdp(
                    "Page.addScriptToEvaluateOnNewDocument",
                    json!({ "source": script }),
                )
                .await?;
        }
        Ok(browser)
    }

    /// The browser's name in the test.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn client(&self, what: &'static str) -> Result<&fantoccini::Client> {
        self.client.as_ref().ok_or_else(|| HarnessError::Cmd {
            name: self.name.clone(),
            what,
            source: Box::new(fantoccini::error::CmdError::NotW3C(Value::String(
                "session closed".into(),
            ))),
        })
    }

    fn cmd_err(
        &self,
        what: &'static str,
    ) -> impl FnOnce(fantoccini::error::CmdError) -> HarnessError {
        let name = self.name.clone();
        move |source| HarnessError::Cmd {
            name,
            what,
            source: Box::new(source),
        }
    }

    /// Navigates to `url`.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`].
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client("goto")?
            .goto(url)
            .await
            .map_err(self.cmd_err("goto"))
    }

    /// Runs `js` (a function body; WebDriver's "Execute Script") in the current tab and returns
    /// what it returns.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`].
    pub async fn execute(&self, js: &str, args: Vec<Value>) -> Result<Value> {
        self.client("execute")?
            .execute(js, args)
            .await
            .map_err(self.cmd_err("execute"))
    }

    /// Runs the Chrome DevTools Protocol command `cmd` with `params` in this browser (through
    /// chromedriver's `goog/cdp/execute`) and returns its result.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`].
    pub async fn cdp(&self, cmd: &'static str, params: Value) -> Result<Value> {
        self.client("cdp")?
            .issue_cmd(Cdp { cmd, params })
            .await
            .map_err(self.cmd_err("cdp"))
    }

    /// Reads the page's [`PageView`] once.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`], [`HarnessError::PageShape`].
    pub async fn view(&self) -> Result<PageView> {
        let got = self.execute(PAGE_VIEW_JS, Vec::new()).await?;
        let view: PageView =
            serde_json::from_value(got.clone()).map_err(|source| HarnessError::PageShape {
                name: self.name.clone(),
                got: got.to_string(),
                source,
            })?;
        if let Some(state) = &view.state {
            if let Ok(mut seen) = self.states_seen.lock() {
                if seen.last() != Some(state) {
                    seen.push(state.clone());
                }
            }
        }
        Ok(view)
    }

    /// Polls the page every [`crate::POLL`] until `done` holds, for at most `timeout`.
    ///
    /// # Errors
    /// [`HarnessError::Timeout`] with the last [`PageView`] and the states seen, or the errors of
    /// [`Browser::view`].
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&PageView) -> bool,
    ) -> Result<PageView> {
        let wait = Wait::new(format!("{}: {what}", self.name), timeout);
        loop {
            let view = self.view().await?;
            if done(&view) {
                return Ok(view);
            }
            wait.tick(format!("{view:?}; states seen: {}", self.states_seen()))
                .await?;
        }
    }

    /// Waits (up to `timeout`) for `<body data-state="state">`.
    ///
    /// # Errors
    /// As [`Browser::wait_until`].
    pub async fn wait_for_state(&self, state: &str, timeout: Duration) -> Result<PageView> {
        self.wait_until(&format!("body[data-state={state}]"), timeout, |v| {
            v.is(state)
        })
        .await
    }

    /// The distinct `data-state`s seen so far, in order, joined by ` → `.
    pub fn states_seen(&self) -> String {
        match self.states_seen.lock() {
            Ok(seen) => seen.join(" → "),
            Err(_) => String::from("(unavailable)"),
        }
    }

    /// The tab WebDriver commands go to now.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`].
    pub async fn current_tab(&self) -> Result<Tab> {
        let handle = self
            .client("window")?
            .window()
            .await
            .map_err(self.cmd_err("window"))?;
        Ok(Tab { handle })
    }

    /// Opens a new tab of this same browser (same profile, its own `sessionStorage`), makes it
    /// the current tab and navigates it to `url`.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`].
    pub async fn open_tab(&self, url: &str) -> Result<Tab> {
        let client = self.client("new_window")?;
        let created = client
            .new_window(true)
            .await
            .map_err(self.cmd_err("new_window"))?;
        let tab = Tab {
            handle: created.handle,
        };
        self.switch_to(&tab).await?;
        self.goto(url).await?;
        Ok(tab)
    }

    /// Makes `tab` the current tab: later commands ([`Browser::view`], …) go to it.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`].
    pub async fn switch_to(&self, tab: &Tab) -> Result<()> {
        self.client("switch_to_window")?
            .switch_to_window(tab.handle.clone())
            .await
            .map_err(self.cmd_err("switch_to_window"))
    }

    /// Saves a PNG screenshot of the page to `path` (creating its folder).
    ///
    /// # Errors
    /// [`HarnessError::Cmd`], [`HarnessError::Io`].
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let png = self
            .client("screenshot")?
            .screenshot()
            .await
            .map_err(self.cmd_err("screenshot"))?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        }
        fs::write(path, png).map_err(io(format!("write {}", path.display())))
    }

    /// Ends the WebDriver session (chromedriver then quits this Chromium); whatever is left of
    /// it is killed when `self` drops.
    ///
    /// # Errors
    /// [`HarnessError::Cmd`].
    pub async fn close(mut self) -> Result<()> {
        match self.client.take() {
            Some(client) => client.close().await.map_err(self.cmd_err("close")),
            None => Ok(()),
        }
    }

    /// This browser's `--user-data-dir=<profile>` argument, unique to it.
    pub fn profile_arg(&self) -> String {
        format!("--user-data-dir={}", self.profile_dir.display())
    }

    /// PIDs of the live processes whose command line holds [`Browser::profile_arg`].
    pub fn chromium_pids(&self) -> Vec<u32> {
        pids_with_arg(&self.profile_arg())
    }
}

/// One tab of a [`Browser`] (a WebDriver window handle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tab {
    handle: fantoccini::wd::WindowHandle,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The fantoccini session ends on its own only while a runtime still polls it; Chromium
        // must not outlive the test either way.
        drop(self.client.take());
        for pid in self.chromium_pids() {
            kill_pid(pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_disabled_features_join_the_one_disable_features_argument() {
        let args = chromium_args(&["BackForwardCache".to_owned()]);
        let disabled: Vec<&String> = args
            .iter()
            .filter(|a| a.starts_with("--disable-features="))
            .collect();
        assert_eq!(
            disabled,
            vec!["--disable-features=WebRtcHideLocalIpsWithMdns,BackForwardCache"]
        );
        assert_eq!(args.len(), CHROMIUM_ARGS.len());
        assert_eq!(
            chromium_args(&[]),
            CHROMIUM_ARGS
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
        );
    }
}
