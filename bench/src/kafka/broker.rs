//! The systems a sweep measures, and starting and stopping the ones it manages.
//!
//! A system is named on the command line as `NAME=BOOTSTRAP`; with `--start NAME=COMMAND`
//! keel-bench starts it before each run and stops it after (SIGTERM to the process it started,
//! then SIGKILL after a grace period), and with `--data-dir NAME=DIR` it empties that
//! directory before each start and after each stop, so every run begins from an empty broker.
//! `{data_dir}` in the command is replaced by the directory. The command runs under `sh -c`
//! with `exec` (unless it has its own, as in `cd {data_dir} && exec broker ...`), so the
//! process started is the broker itself and its CPU time is the broker's.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::client::{resolve, Connection};

/// How long a started broker may take to answer ApiVersions.
pub const START_WAIT_MAX: Duration = Duration::from_secs(60);

/// How long a stopped broker may take to exit after SIGTERM before it is killed.
pub const STOP_WAIT_MAX: Duration = Duration::from_secs(20);

/// One system under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemSpec {
    pub name: String,
    pub bootstrap: String,
    /// Shell command that starts it, if keel-bench manages it.
    pub start: Option<String>,
    /// Its data directory, emptied around every run.
    pub data_dir: Option<PathBuf>,
}

/// Splits `NAME=VALUE`.
pub fn parse_named(text: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = text
        .split_once('=')
        .with_context(|| format!("{text:?}: expected NAME=VALUE"))?;
    anyhow::ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)),
        "{name:?}: a system name is letters, digits, - and _"
    );
    Ok((name.to_owned(), value.to_owned()))
}

/// Builds the system list from `--system`, `--start` and `--data-dir` values.
pub fn systems_from_args(
    systems: &[String],
    starts: &[String],
    data_dirs: &[String],
) -> anyhow::Result<Vec<SystemSpec>> {
    let mut out: Vec<SystemSpec> = Vec::new();
    for text in systems {
        let (name, bootstrap) = parse_named(text)?;
        anyhow::ensure!(
            out.iter().all(|s| s.name != name),
            "system {name} named twice"
        );
        out.push(SystemSpec {
            name,
            bootstrap,
            start: None,
            data_dir: None,
        });
    }
    for text in starts {
        let (name, command) = parse_named(text)?;
        named(&mut out, &name, "--start")?.start = Some(command);
    }
    for text in data_dirs {
        let (name, dir) = parse_named(text)?;
        named(&mut out, &name, "--data-dir")?.data_dir = Some(PathBuf::from(dir));
    }
    Ok(out)
}

/// The system called `name`, which a `flag` value names.
fn named<'a>(
    systems: &'a mut [SystemSpec],
    name: &str,
    flag: &str,
) -> anyhow::Result<&'a mut SystemSpec> {
    systems
        .iter_mut()
        .find(|s| s.name == name)
        .with_context(|| format!("{flag} {name}: no --system {name}=..."))
}

/// A broker keel-bench started; stopped when dropped.
#[derive(Debug)]
pub struct RunningBroker {
    child: Option<Child>,
    data_dir: Option<PathBuf>,
    log: PathBuf,
}

/// Empties `dir` (removes and recreates it).
fn clean_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("removing {}", dir.display())),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

impl RunningBroker {
    /// Starts `system` (when it has a start command) with an empty data dir and waits until
    /// it answers ApiVersions. Its output goes to `log_dir/<name>.log`. Without a start
    /// command, only checks that the bootstrap address answers.
    pub fn start(system: &SystemSpec, log_dir: &Path) -> anyhow::Result<Option<Self>> {
        let addr = resolve(&system.bootstrap)?;
        let Some(command) = &system.start else {
            Connection::connect(addr, Duration::from_secs(5)).with_context(|| {
                format!(
                    "{} at {} is unreachable (and has no --start command)",
                    system.name, system.bootstrap
                )
            })?;
            return Ok(None);
        };
        // A broker already answering there is not the one we are about to start: measuring it
        // would measure someone else's process.
        anyhow::ensure!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
            "{}: something already listens on {}; stop it or pick another port",
            system.name,
            system.bootstrap
        );
        if let Some(dir) = &system.data_dir {
            clean_dir(dir)?;
        }
        let command = match &system.data_dir {
            Some(dir) => command.replace("{data_dir}", &dir.to_string_lossy()),
            None => command.clone(),
        };
        let log = log_dir.join(format!("{}.log", system.name));
        let output = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        // `exec` makes the broker the process we started (its CPU time is then the broker's);
        // a command with its own `exec` (`cd DIR && exec broker ...`) is run as given.
        let script = if command.contains("exec ") {
            command.clone()
        } else {
            format!("exec {command}")
        };
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting {}: {command}", system.name))?;
        let mut broker = Self {
            child: Some(child),
            data_dir: system.data_dir.clone(),
            log,
        };
        broker.wait_ready(system, addr)?;
        Ok(Some(broker))
    }

    fn wait_ready(
        &mut self,
        system: &SystemSpec,
        addr: std::net::SocketAddr,
    ) -> anyhow::Result<()> {
        let until = Instant::now() + START_WAIT_MAX;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    anyhow::bail!(
                        "{} exited at start ({status}); its log ends:\n{}",
                        system.name,
                        self.log_tail()
                    );
                }
            }
            match Connection::connect(addr, Duration::from_secs(1)) {
                Ok(_) => {
                    // The answer must come from our child, not from a process that took the
                    // port meanwhile (ours would then have failed to bind and exited).
                    std::thread::sleep(Duration::from_millis(200));
                    if let Some(child) = self.child.as_mut() {
                        if let Some(status) = child.try_wait()? {
                            anyhow::bail!(
                                "{} exited at start ({status}); its log ends:\n{}",
                                system.name,
                                self.log_tail()
                            );
                        }
                    }
                    return Ok(());
                }
                Err(error) if Instant::now() >= until => {
                    return Err(error).with_context(|| {
                        format!(
                            "{} did not answer at {} within {START_WAIT_MAX:?}; its log ends:\n{}",
                            system.name,
                            system.bootstrap,
                            self.log_tail()
                        )
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The last lines of the broker's output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The file the broker's output goes to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The broker's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, a grace period, SIGKILL; then empties the data dir.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_child()?;
        if let Some(dir) = &self.data_dir {
            clean_dir(dir)?;
        }
        Ok(())
    }

    fn stop_child(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = libc::pid_t::try_from(child.id())?;
        // SAFETY: kill on the PID of the child this process started and has not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let until = Instant::now() + STOP_WAIT_MAX;
        while Instant::now() < until {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(pid, "broker ignored SIGTERM; killing it");
        child.kill().context("killing the broker")?;
        child.wait().context("reaping the broker")?;
        Ok(())
    }
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        if let Err(error) = self.stop_child() {
            tracing::warn!(%error, "stopping a broker");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_systems_from_args() -> anyhow::Result<()> {
        let systems = systems_from_args(
            &["keel=127.0.0.1:1".into(), "peer=127.0.0.1:2".into()],
            &["keel=keel --data-dir {data_dir}".into()],
            &["keel=d".into()],
        )?;
        assert_eq!(
            systems[0].start.as_deref(),
            Some("keel --data-dir {data_dir}")
        );
        assert_eq!(systems[0].data_dir.as_deref(), Some(Path::new("d")));
        assert_eq!(systems[1].start, None);
        assert!(systems_from_args(&["a=1".into()], &["b=x".into()], &[]).is_err());
        assert!(parse_named("no-equals").is_err());
        Ok(())
    }

    #[test]
    fn a_broker_that_exits_at_start_is_an_error_with_its_log() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let system = SystemSpec {
            name: "broken".into(),
            bootstrap: format!("127.0.0.1:{port}"),
            start: Some("echo cannot start; false".into()),
            data_dir: Some(dir.path().join("data")),
        };
        let error = RunningBroker::start(&system, dir.path())
            .err()
            .ok_or_else(|| anyhow::anyhow!("a failing start succeeded"))?;
        let text = format!("{error:#}");
        assert!(
            text.contains("exited at start") && text.contains("cannot start"),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn a_port_already_taken_is_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let system = SystemSpec {
            name: "other".into(),
            bootstrap: listener.local_addr()?.to_string(),
            start: Some("sleep 30".into()),
            data_dir: None,
        };
        let error = RunningBroker::start(&system, dir.path())
            .err()
            .ok_or_else(|| anyhow::anyhow!("started over a taken port"))?;
        assert!(
            format!("{error:#}").contains("already listens"),
            "{error:#}"
        );
        Ok(())
    }
}
