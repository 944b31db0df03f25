//! The rig both benchmark modes measure on: coturn ([`bench_turn`]) behind a [`DelayProxy`],
//! the real server with the mode's scene file, chromedriver and two headless Chromium
//! processes, `a` and `b`. [`Rig::start`] starts them in that order; [`Rig::close`] ends the
//! browsers' sessions and stops the rest in the reverse order, each by its own handle (PID).

use std::net::SocketAddr;

use pairlab_tests::browser::BrowserOptions;
use pairlab_tests::delay_proxy::DelayProxy;
use pairlab_tests::turn::Coturn;
use pairlab_tests::{Browser, ChromeDriver, Server, WorkDir};

use super::{bench_turn, close_browser, R};

/// The options of a bench browser: `init_script` (if any) in every document, and
/// `BackForwardCache` disabled, so a page left for `about:blank` is torn down at once (its
/// WebSocket and RTCPeerConnections closed, its TURN allocations released) instead of being
/// kept alive in the back/forward cache.
pub(crate) fn browser_options(init_script: Option<&str>) -> BrowserOptions {
    BrowserOptions {
        disable_features: vec!["BackForwardCache".to_owned()],
        init_script: init_script.map(str::to_owned),
    }
}

/// Everything a benchmark run needs, started and stopped together (see the module docs).
pub(crate) struct Rig {
    /// The run's work directory (logs, the scene file, the record, raw per-round lines).
    pub work: WorkDir,
    /// The TURN server; `None` once a mode stopped it on purpose (`--break-turn`).
    pub coturn: Option<Coturn>,
    /// coturn's address (the proxy forwards to it).
    pub coturn_addr: SocketAddr,
    /// The UDP delay proxy in front of coturn: the scenes' only ICE server.
    pub proxy: DelayProxy,
    pub server: Server,
    pub driver: ChromeDriver,
    pub a: Browser,
    pub b: Browser,
}

impl Rig {
    /// Starts the rig in a fresh work directory `work_name`: the server's scene file is what
    /// `scene_toml` gives for the proxy's address; both browsers open with
    /// [`browser_options`] of `init_script`.
    ///
    /// # Errors
    /// Whichever part fails to start (what is already started is stopped as it drops).
    pub async fn start(
        work_name: &str,
        scene_toml: impl FnOnce(SocketAddr) -> String,
        init_script: Option<&str>,
    ) -> R<Self> {
        let work = WorkDir::fresh(work_name)?;
        let coturn = bench_turn(&work).await?;
        let coturn_addr = coturn.addr();
        let proxy = DelayProxy::start("127.0.0.1:0".parse()?, coturn_addr).await?;
        let server = Server::start(&work, &scene_toml(proxy.local_addr())).await?;
        let driver = ChromeDriver::start(&work).await?;
        let options = browser_options(init_script);
        let a = Browser::open_with(&driver, &work, "a", &options).await?;
        let b = Browser::open_with(&driver, &work, "b", &options).await?;
        Ok(Self {
            work,
            coturn: Some(coturn),
            coturn_addr,
            proxy,
            server,
            driver,
            a,
            b,
        })
    }

    /// coturn's PID, 0 once it was stopped.
    pub fn coturn_pid(&self) -> u32 {
        self.coturn.as_ref().map_or(0, Coturn::pid)
    }

    /// Ends both browsers' sessions, then stops chromedriver, the server, the proxy and coturn.
    /// The work directory stays for the raw lines and logs.
    pub async fn close(self) -> WorkDir {
        close_browser(self.a).await;
        close_browser(self.b).await;
        drop(self.driver);
        drop(self.server);
        self.proxy.stop();
        drop(self.coturn);
        self.work
    }
}
