//! Child processes in tests, with deadlines and without orphans.
//!
//! A test that waits on a child without a deadline hangs the whole run when the child
//! stalls; a child left running after a failed test keeps the run's output pipe open, which
//! looks the same from outside. These helpers bound every wait, and [`Guarded`] kills its
//! child when the test ends, however it ends.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often a wait checks whether the child exited.
const POLL: Duration = Duration::from_millis(20);

/// Runs `command` to its end with its output captured, like [`Command::output`], but kills it
/// and fails the test when it runs longer than `limit`.
///
/// ```
/// use std::process::Command;
/// use std::time::Duration;
///
/// let out = tidings_testkit::process::output(Command::new("echo").arg("hi"), Duration::from_secs(5));
/// assert_eq!(out.stdout, b"hi\n");
/// ```
///
/// # Panics
///
/// When the command cannot start, or does not exit within `limit`.
pub fn output(command: &mut Command, limit: Duration) -> Output {
    run(command, None, limit)
}

/// [`output`], with `input` written to the command's standard input (then closed).
///
/// # Panics
///
/// As [`output`].
pub fn output_with_input(command: &mut Command, input: &[u8], limit: Duration) -> Output {
    run(command, Some(input.to_vec()), limit)
}

fn run(command: &mut Command, input: Option<Vec<u8>>, limit: Duration) -> Output {
    let what = describe(command);
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = Guarded::spawn(
        command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    if let (Some(input), Some(mut pipe)) = (input, child.0.stdin.take()) {
        // On a thread: a child that does not read would otherwise block the test here.
        std::thread::spawn(move || {
            use std::io::Write as _;
            let _ = pipe.write_all(&input);
        });
    }
    let stdout = drain(child.0.stdout.take());
    let stderr = drain(child.0.stderr.take());
    let status = child.wait(limit, &what);
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    format!("`{}`", words.join(" "))
}

/// A child process that is killed (and reaped) when this is dropped.
#[derive(Debug)]
pub struct Guarded(pub Child);

impl Guarded {
    /// Starts `command`.
    ///
    /// # Panics
    ///
    /// When it cannot start.
    pub fn spawn(command: &mut Command) -> Self {
        let what = describe(command);
        Self(
            command
                .spawn()
                .unwrap_or_else(|error| panic!("{what} could not start: {error}")),
        )
    }

    /// Starts `command`, or returns why it could not start.
    ///
    /// # Errors
    ///
    /// When the program cannot be started (not installed, say).
    pub fn try_spawn(command: &mut Command) -> std::io::Result<Self> {
        command.spawn().map(Self)
    }

    /// Waits for the child to exit; kills it and fails the test after `limit`.
    ///
    /// # Panics
    ///
    /// When it does not exit within `limit`; `what` names it in the message.
    pub fn wait(&mut self, limit: Duration, what: &str) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                Ok(None) => {
                    let _ = self.0.kill();
                    let _ = self.0.wait();
                    panic!("{what} did not exit within {limit:?}; killed it");
                }
                Err(error) => panic!("waiting for {what}: {error}"),
            }
        }
    }

    /// Sends `SIGTERM` and waits for the exit, as [`wait`](Self::wait) does.
    ///
    /// # Panics
    ///
    /// When the signal cannot be sent or the child does not exit within `limit`.
    pub fn terminate(&mut self, limit: Duration, what: &str) -> ExitStatus {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "could not send SIGTERM to {what}");
        self.wait(limit, what)
    }

    /// Kills the child now and reaps it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The lines a child prints on `stdout` (or `stderr`), read on a thread of their own, so that
/// a test can wait for one with a deadline.
#[derive(Debug)]
pub struct Lines(mpsc::Receiver<String>);

impl Lines {
    /// Starts reading `output` (a child's `stdout` or `stderr`) to its end.
    pub fn read(output: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines() {
                let Ok(line) = line else { return };
                // Once the test stopped listening, the rest is read and dropped, so that the
                // child never blocks on a full pipe.
                let _ = tx.send(line);
            }
        });
        Self(rx)
    }

    /// The next line, or `None` when the child closed its output or `limit` passed.
    pub fn next_within(&self, limit: Duration) -> Option<String> {
        self.0.recv_timeout(limit).ok()
    }

    /// The lines printed so far and not yet read, without waiting: for a failure's message.
    pub fn drain(&self) -> Vec<String> {
        self.0.try_iter().collect()
    }

    /// Reads lines until one satisfies `wanted`, returning it.
    ///
    /// # Panics
    ///
    /// When the output ends first, or `limit` passes; `what` names what was awaited.
    pub fn find(&self, limit: Duration, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{what} was not printed within {limit:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the process exited before printing {what}")
                }
            }
        }
    }
}

/// A TCP port on 127.0.0.1 that the system had free a moment ago, for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
///
/// # Panics
///
/// When nothing does within `limit`; `what` names the server in the message.
pub async fn wait_for_port(port: u16, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
