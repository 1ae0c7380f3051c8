//! A process kept running the way systemd's `Restart=always` keeps a service: started
//! again whenever it exits, until dropped. [`restart_hook`] is the shell command that
//! restarts one, as `systemctl restart` would: SIGTERM (the service drains), then wait
//! until it is gone; the supervisor starts it again at once. [`Supervised::stop_service`]
//! and [`Supervised::start_service`] are `systemctl stop` and `systemctl start`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The supervising loop: `$@` is the service's command line.
const LOOP: &str = r#"
while [ ! -e "$PYLON_STOP" ]; do
  if [ -e "$PYLON_HOLD" ]; then sleep 0.1; continue; fi
  "$@" >>"$PYLON_LOG" 2>&1 &
  echo $! >"$PYLON_PID"
  wait $!
done
"#;

pub struct Supervised {
    shell: Child,
    pid_file: PathBuf,
    stop_file: PathBuf,
    /// While it exists, the service is stopped and not started again.
    hold_file: PathBuf,
    pub log: PathBuf,
}

impl Supervised {
    /// Starts `program args` as `name` under supervision; its pid is kept in
    /// `dir/<name>.pid` (what [`restart_hook`] reads).
    pub fn start(
        dir: &Path,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Supervised {
        let pid_file = dir.join(format!("{name}.pid"));
        let stop_file = dir.join(format!("{name}.stop"));
        let hold_file = dir.join(format!("{name}.hold"));
        let log = dir.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&hold_file);
        let shell = Command::new("sh")
            .arg("-c")
            .arg(LOOP)
            .arg(name)
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .env("PYLON_PID", &pid_file)
            .env("PYLON_STOP", &stop_file)
            .env("PYLON_HOLD", &hold_file)
            .env("PYLON_LOG", &log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the supervisor");
        Supervised {
            shell,
            pid_file,
            stop_file,
            hold_file,
            log,
        }
    }

    /// Stops the service and keeps it stopped (`systemctl stop`): SIGTERM, and SIGKILL
    /// if it has not exited within 10 s.
    pub fn stop_service(&self) {
        let _ = std::fs::write(&self.hold_file, "");
        let Some(pid) = self.pid() else { return };
        // SAFETY: kill(2) has no memory effects.
        let alive = || unsafe { libc::kill(pid, 0) } == 0;
        // SAFETY: as above.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive() {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// Lets the supervisor start the service again (`systemctl start`).
    pub fn start_service(&self) {
        let _ = std::fs::remove_file(&self.hold_file);
    }

    /// The service's current pid.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop_file, "");
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) has no memory effects.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        for _ in 0..40 {
            if matches!(self.shell.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

/// The restart hook for services supervised in `dir`, for `pylonctl rollout --restart`:
/// SIGTERM to `{id}`'s current process, then wait until it has exited.
pub fn restart_hook(dir: &Path) -> String {
    format!(
        "pid=$(cat '{dir}/{{id}}.pid') && kill -TERM \"$pid\" && \
         while kill -0 \"$pid\" 2>/dev/null; do sleep 0.1; done",
        dir = dir.display()
    )
}
