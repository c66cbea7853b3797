//! Capturing a shell's state: run the shell's login startup and the capture script
//! (`capture.{bash,zsh,sh}`) as the command itself would run — same environment, cwd and
//! sandbox — and parse what it prints.
//!
//! The script prints three NUL-delimited markers: the state (shell text that recreates
//! functions, aliases and options), then the exported environment as `NAME=value\0`
//! records, then an end marker. Whatever the startup files print before the first marker
//! is ignored; a capture without all three markers is invalid.

use super::ShellKind;
use crate::process::spawn::{SpawnRequest, SpawnedChild, spawn};
use crate::sandbox::{HelperCommand, Plan, Sandbox, SetupError};
use rexec_protocol::process::OutputStream;
use std::collections::BTreeMap;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

/// How long a capture may take, startup files included.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(10);
/// What a capture may print, startup output included.
const MAX_CAPTURE_BYTES: usize = 4 * 1024 * 1024;
/// The parsed state plus environment.
pub const MAX_SNAPSHOT_BYTES: usize = 512 * 1024;

const STATE_MARKER: &[u8] = b"\0REXEC_SNAPSHOT_STATE\0";
const ENV_MARKER: &[u8] = b"\0REXEC_SNAPSHOT_ENV\0";
const END_MARKER: &[u8] = b"\0REXEC_SNAPSHOT_END\0";

/// Variables the shell sets for itself, which must come from the command's own shell.
const SHELL_OWNED: &[&str] = &["PWD", "OLDPWD", "_"];

/// What a capture yields: shell text to replay, and the exported environment.
#[derive(Debug, PartialEq, Eq)]
pub struct Captured {
    pub state: String,
    pub env: BTreeMap<String, String>,
}

/// How the command would be launched; the capture is launched the same way.
pub struct Launch<'a> {
    /// The command's argv: `[shell, "-lc", script, …]`.
    pub argv: &'a [String],
    pub arg0: Option<&'a str>,
    pub cwd: &'a Path,
    pub env: &'a BTreeMap<String, String>,
    pub sandbox: Option<(&'a Path, &'a Plan)>,
}

fn script(kind: ShellKind) -> &'static str {
    match kind {
        ShellKind::Bash => include_str!("capture.bash"),
        ShellKind::Zsh => include_str!("capture.zsh"),
        ShellKind::Sh => include_str!("capture.sh"),
    }
}

/// Run the capture and parse it. Errors say why, for the log; the caller falls back.
pub async fn capture(kind: ShellKind, launch: &Launch<'_>) -> Result<Captured, String> {
    let mut argv = launch.argv.to_vec();
    argv[2] = script(kind).to_owned();
    let helper = match launch.sandbox {
        None => None,
        Some((helper, plan)) => Some(
            HelperCommand::new(helper, plan, &argv, launch.arg0)
                .map_err(|err| format!("preparing the capture sandbox: {err}"))?,
        ),
    };
    let spawned = spawn(&SpawnRequest {
        argv: &argv,
        arg0: launch.arg0,
        cwd: launch.cwd,
        env: launch.env,
        tty: false,
        pipe_stdin: false,
        helper: helper.as_ref(),
    })
    .map_err(|err| format!("spawning the capture: {err}"))?;
    let SpawnedChild {
        mut child,
        descendants,
        outputs,
        ..
    } = spawned;
    let run = async {
        // Held until the capture ends: it supervises the sandbox's network filter.
        let _sandbox = match (helper, launch.sandbox) {
            (Some(command), Some((_, plan))) => Some(
                Sandbox::launch(command, plan.clone(), launch.cwd)
                    .await
                    .map_err(|err| match err {
                        SetupError::Sandbox(why) => format!("sandboxing the capture: {why}"),
                        SetupError::Spawn(err) => format!("spawning the capture: {err}"),
                    })?,
            ),
            _ => None,
        };
        let mut stdout = None;
        let mut stderr = None;
        for (stream, fd) in outputs {
            match stream {
                OutputStream::Stdout => stdout = Some(fd),
                _ => stderr = Some(fd),
            }
        }
        let stdout = stdout.ok_or("the capture has no stdout")?;
        // Startup files may write to stderr: drain it so they never block on a full pipe.
        let (output, _) = tokio::join!(
            read_to_end(stdout, MAX_CAPTURE_BYTES),
            read_to_end_opt(stderr)
        );
        let output = output.map_err(|err| format!("reading the capture: {err}"))?;
        let status = child
            .wait()
            .await
            .map_err(|err| format!("waiting for the capture: {err}"))?;
        if !status.success() {
            return Err(format!("the capture exited with {status}"));
        }
        parse(&output)
    };
    let result = match tokio::time::timeout(CAPTURE_TIMEOUT, run).await {
        Ok(result) => result,
        Err(_) => Err(format!("the capture took longer than {CAPTURE_TIMEOUT:?}")),
    };
    // Whatever the startup files left running goes with the capture.
    descendants.kill();
    result
}

async fn read_to_end_opt(fd: Option<OwnedFd>) -> io::Result<Vec<u8>> {
    match fd {
        Some(fd) => read_to_end(fd, 0).await,
        None => Ok(Vec::new()),
    }
}

/// Read a non-blocking pipe to its end, keeping at most `limit` bytes (0: keep none).
/// More than `limit` is an error.
async fn read_to_end(fd: OwnedFd, limit: usize) -> io::Result<Vec<u8>> {
    let fd = crate::sync::register(fd)?;
    let mut kept = Vec::new();
    let mut buf = [MaybeUninit::<u8>::uninit(); 64 * 1024];
    loop {
        let mut guard = fd.readable().await?;
        let read = guard.try_io(|inner| {
            rustix::io::read(inner.get_ref(), &mut buf)
                .map(|(filled, _)| filled.len())
                .map_err(io::Error::from)
        });
        let Ok(read) = read else { continue };
        let n = read?;
        if n == 0 {
            return Ok(kept);
        }
        if limit == 0 {
            continue;
        }
        if kept.len() + n > limit {
            return Err(io::Error::other(format!("more than {limit} bytes")));
        }
        // SAFETY: `read` initialised the first `n` bytes of `buf`.
        kept.extend(buf[..n].iter().map(|b| unsafe { b.assume_init() }));
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parse a capture's output (see the module comment).
pub fn parse(output: &[u8]) -> Result<Captured, String> {
    let invalid = |what: &str| format!("invalid capture: {what}");
    let start = find(output, STATE_MARKER).ok_or_else(|| invalid("no state marker"))?;
    let rest = &output[start + STATE_MARKER.len()..];
    let env_at = find(rest, ENV_MARKER).ok_or_else(|| invalid("no environment marker"))?;
    let state = &rest[..env_at];
    let rest = &rest[env_at + ENV_MARKER.len()..];
    let end_at = find(rest, END_MARKER).ok_or_else(|| invalid("no end marker"))?;
    let records = &rest[..end_at];
    let state = std::str::from_utf8(state)
        .map_err(|_| invalid("state is not UTF-8"))?
        .to_owned();
    if state.len() + records.len() > MAX_SNAPSHOT_BYTES {
        return Err(format!(
            "the snapshot is larger than {MAX_SNAPSHOT_BYTES} bytes"
        ));
    }
    let env = records
        .split(|b| *b == 0)
        .filter_map(|record| {
            let (name, value) = std::str::from_utf8(record).ok()?.split_once('=')?;
            (is_name(name) && !SHELL_OWNED.contains(&name))
                .then(|| (name.to_owned(), value.to_owned()))
        })
        .collect();
    Ok(Captured { state, env })
}

/// A name a shell can export (`BAD-NAME` from the environment cannot be restored).
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn startup_output_before_the_markers_is_ignored() {
        let raw = output(&[
            b"profile says hi\n",
            STATE_MARKER,
            b"f () { :; }\n",
            ENV_MARKER,
            b"A=1\0MULTI=x\ny\0PWD=/stale\0BAD-NAME=v\0_=/bin/env\0",
            END_MARKER,
        ]);
        let captured = parse(&raw).expect("parses");
        assert_eq!(captured.state, "f () { :; }\n");
        assert_eq!(
            captured.env,
            BTreeMap::from([
                ("A".to_owned(), "1".to_owned()),
                ("MULTI".to_owned(), "x\ny".to_owned()),
            ])
        );
    }

    #[test]
    fn a_capture_cut_short_is_invalid() {
        for raw in [
            output(&[b"no markers"]),
            output(&[STATE_MARKER, b"x"]),
            output(&[STATE_MARKER, ENV_MARKER, b"A=1\0"]),
        ] {
            assert!(parse(&raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn an_oversized_snapshot_is_refused() {
        let big = vec![b'x'; MAX_SNAPSHOT_BYTES + 1];
        let raw = output(&[STATE_MARKER, &big, ENV_MARKER, END_MARKER]);
        let error = parse(&raw).expect_err("refused");
        assert!(error.contains("larger than"), "{error}");
    }
}
