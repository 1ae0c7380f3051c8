//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`,
//! which `cargo xtask test` installs): chromedriver on a free loopback port, one browser
//! session, both gone when the [`Browser`] drops, even after a failed assertion.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::monitoring::tool;
use crate::{free_port, local};

pub struct Browser {
    pub client: Client,
    _driver: Driver,
    /// Where screenshots go (`target/console/`).
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (1280x900, no network but loopback).
    pub async fn start(log: &Path) -> Browser {
        let chromium = tool("chromium", "chromium");
        let driver_bin = tool("chromedriver", "chromium-driver");
        let port = free_port();
        let file = std::fs::File::create(log).expect("chromedriver log");
        let mut command = Command::new(driver_bin);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file);
        // Its own process group: dropping kills the browser it started too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = Driver(command.spawn().expect("starting chromedriver"));
        let addr = local(port);
        let up = (0..200).any(|_| {
            let ok = crate::http::get_as(addr, "/status", None).0 == 200;
            if !ok {
                std::thread::sleep(Duration::from_millis(50));
            }
            ok
        });
        let profile = tempfile::tempdir().expect("browser profile");
        assert!(
            up,
            "chromedriver did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium, "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://{addr}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "a Chromium session: {e}\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console");
        let _ = std::fs::create_dir_all(&shots);
        Browser {
            client,
            _driver: driver,
            shots,
            _profile: profile,
        }
    }

    /// Saves a screenshot of the page as `target/console/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("saving the screenshot");
        path
    }

    /// The text of the first element matching `css`, once there is one (within 20 s).
    pub async fn text(&self, css: &str) -> String {
        let element = self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"));
        element.text().await.unwrap_or_default()
    }

    /// Waits (20 s at most) until the text of `css` is `expected`.
    pub async fn wait_text(&self, css: &str, expected: &str) {
        let mut last = String::new();
        for _ in 0..100 {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                last = element.text().await.unwrap_or_default();
                if last.trim() == expected {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let page = self.client.source().await.unwrap_or_default();
        panic!(
            "{css} reads {last:?}, not {expected:?}; the page:\n{}",
            &page[..page.len().min(4000)]
        );
    }

    pub async fn click(&self, css: &str) {
        let element = self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} to click: {e}"));
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let element = self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} to fill: {e}"));
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Ends the browser session (also done, less politely, on drop).
    pub async fn close(self) {
        let client = self.client.clone();
        let _ = client.close().await;
    }
}

/// chromedriver, killed with the Chromium it started (its process group) on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: plain libc call on our own child's process group.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}
