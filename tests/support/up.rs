//! A real `keyledger up` process, as users run it, for the tests that need the whole
//! binary: its own data directory, free ports, its stdout read for where it listens.

use std::process::{Command, Stdio};

/// A `keyledger up` process on free ports in a temporary data directory; killed when
/// dropped.
pub struct Up {
    pub child: std::process::Child,
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`.
    pub http: String,
    /// `127.0.0.1:<port>` of the managed nats-server.
    pub nats: String,
    /// `http://127.0.0.1:<port>` of `/metrics`, `/healthz` and `/readyz`.
    pub ops: String,
}

/// `keyledger up` on the data directory `data`, its HTTP API on `http_addr` and its
/// nats-server on a free port: for [`Up::spawn`], or for a start that must be refused
/// (run with `output()`).
pub fn command(data: &std::path::Path, http_addr: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyledger"));
    command
        .args([
            "up",
            "--nats-port",
            "0",
            "--http-addr",
            http_addr,
            // Tests run side by side: not the default port.
            "--metrics-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .env("RUST_LOG", "warn");
    command
}

impl Up {
    /// Starts `keyledger up`, with `configure` applied to its command, and waits until
    /// it prints where it listens.
    pub async fn spawn(configure: impl FnOnce(&mut Command)) -> Up {
        Self::spawn_in(tempfile::tempdir().unwrap(), configure).await
    }

    /// [`Up::spawn`] on `dir` (its data directory is `dir/data`): again on the
    /// directory of an earlier run that [`Up::stop_keeping`] returned.
    pub async fn spawn_in(dir: tempfile::TempDir, configure: impl FnOnce(&mut Command)) -> Up {
        let mut command = command(&dir.path().join("data"), "127.0.0.1:0");
        command
            .stdout(Stdio::piped())
            // Its log, for `diagnosis` when a test fails.
            .stderr(std::fs::File::create(dir.path().join("up.log")).unwrap());
        configure(&mut command);
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        // Its stdout is read to the end, not only to the addresses: a closed pipe would
        // fail keyledger's later writes.
        let (found, addresses) = std::sync::mpsc::channel();
        // Kept as `dir/up.out`, as a service manager would keep it.
        let mut kept = std::fs::File::create(dir.path().join("up.out")).unwrap();
        std::thread::spawn(move || {
            use std::io::{BufRead, Write as _};
            let (mut http, mut nats, mut ops) = (None, None, None);
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = writeln!(kept, "{line}");
                let first = |rest: &str| rest.split_whitespace().next().map(str::to_owned);
                if let Some(rest) = line.trim().strip_prefix("HTTP API") {
                    http = first(rest);
                } else if let Some(rest) = line.trim().strip_prefix("NATS ") {
                    nats = first(rest).map(|n| {
                        n.trim_start_matches("nats://")
                            .trim_start_matches("tls://")
                            .to_owned()
                    });
                } else if let Some(rest) = line.trim().strip_prefix("metrics ") {
                    ops = first(rest).map(|m| m.trim_end_matches("/metrics").to_owned());
                }
                if let (Some(h), Some(n), Some(o)) = (&http, &nats, &ops) {
                    let _ = found.send((h.clone(), n.clone(), o.clone()));
                    http = None;
                }
            }
        });
        let (http, nats, ops) = tokio::task::spawn_blocking(move || {
            addresses
                .recv_timeout(std::time::Duration::from_secs(120))
                .expect("keyledger up prints its HTTP, NATS and metrics addresses")
        })
        .await
        .unwrap();
        Up {
            child,
            dir,
            http,
            nats,
            ops,
        }
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The managed nats-server's URL with keyledger's service credentials.
    pub fn service_url(&self) -> String {
        let password =
            std::fs::read_to_string(self.data_dir().join(infra::server::SERVICE_PASSWORD_FILE))
                .unwrap();
        format!(
            "nats://{}:{}@{}",
            infra::server::SERVICE_USER,
            password.trim(),
            self.nats
        )
    }

    /// A JetStream context with keyledger's service credentials.
    pub async fn service_js(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(
            infra::nats::connect(&self.service_url(), "test")
                .await
                .unwrap(),
        )
    }

    /// A token `keyledger token issue` gives `user` in `project` with `roles`.
    pub fn token(&self, user: &str, project: &str, roles: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_keyledger"))
            .args(["token", "issue", "--user", user, "--project", project])
            .args(["--roles", roles, "--ttl", "1h", "--data-dir"])
            .arg(self.data_dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Whether the process still runs (or how it ended), and the end of its log: for
    /// the message of a test that failed talking to it.
    pub fn diagnosis(&mut self) -> String {
        let state = match self.child.try_wait() {
            Ok(None) => "keyledger up is running".to_owned(),
            Ok(Some(status)) => format!("keyledger up exited: {status}"),
            Err(e) => format!("keyledger up: {e}"),
        };
        let log = std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{state}; the end of its log:\n{}", tail.join("\n"))
    }

    /// The process's resident set size, in bytes.
    pub fn rss(&self) -> u64 {
        rss_of(self.child.id()).expect("VmRSS in /proc/<pid>/status")
    }

    /// SIGTERM, and a clean exit.
    pub fn stop(self) {
        drop(self.stop_keeping());
    }

    /// [`Up::stop`], keeping the directory for another run.
    pub fn stop_keeping(mut self) -> tempfile::TempDir {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "keyledger up exits cleanly: {status}");
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resident set size of process `pid`, in bytes, while it runs.
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
