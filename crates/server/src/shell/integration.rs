//! Shell integration: how a shell is started and taught to mark its command boundaries.
//!
//! The shell starts with no startup files of the user's (`bash --noprofile --norc`, `sh`
//! without `ENV`, `zsh -f`) and without a line editor, so the terminal's own echo is the
//! only echo and the server turns it off. The first thing written to it is the setup
//! script: a `PS1` that prints, at every prompt, the end marker with `$?`, the working
//! directory and the prompt marker, each carrying this shell's random nonce. A command line
//! is sent as `printf <start marker>; eval '<command>'`: one complete line for the parser
//! whatever the command contains (quotes, a heredoc, a syntax error stay inside `eval`).
//! The nonce is never written to disk; a command that prints a marker without it is output.

use rexec_protocol::shell::ShellKind;
use std::collections::BTreeMap;

/// The terminal's line discipline truncates a line past 4095 bytes.
const MAX_LINE_BYTES: usize = 4000;

/// Variables that would change how the shell starts or prompts.
const SCRUBBED_ENV: &[&str] = &[
    "ENV",
    "BASH_ENV",
    "PROMPT_COMMAND",
    "PS0",
    "PS1",
    "PS2",
    "PS4",
    "TMOUT",
    "MAILCHECK",
    "MAILPATH",
    "HISTFILE",
    "ZDOTDIR",
];

pub struct Integration {
    pub kind: ShellKind,
    pub nonce: String,
}

impl Integration {
    pub fn new(kind: ShellKind) -> Self {
        Self {
            kind,
            nonce: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    pub fn argv(&self) -> Vec<String> {
        let argv: &[&str] = match self.kind {
            ShellKind::Bash => &["bash", "--noprofile", "--norc", "--noediting", "-i"],
            ShellKind::Sh => &["sh", "-i"],
            ShellKind::Zsh => &["zsh", "-f", "--no-zle", "-i"],
        };
        argv.iter().map(|&arg| arg.to_owned()).collect()
    }

    pub fn prepare_env(&self, env: &mut BTreeMap<String, String>) {
        for name in SCRUBBED_ENV {
            env.remove(*name);
        }
        env.entry("TERM".to_owned())
            .or_insert_with(|| "dumb".to_owned());
    }

    /// The first input of the shell: one line that installs the markers.
    pub fn setup_script(&self) -> Vec<u8> {
        let n = &self.nonce;
        let prompt = format!("\x1b]133;D;{n};$?\x07\x1b]7;{n};$PWD\x07\x1b]133;A;{n}\x07");
        let script = match self.kind {
            ShellKind::Bash => format!(
                "unset HISTFILE; set +o history +H; PS1='{prompt}'; PS2=''; readonly PS1 PS2\n"
            ),
            ShellKind::Sh => format!("PS1='{prompt}'; PS2=''; readonly PS1 PS2\n"),
            ShellKind::Zsh => format!(
                "unsetopt zle prompt_sp prompt_cr; setopt prompt_subst no_prompt_bang no_prompt_percent; \
                 PS1='{prompt}'; PS2=''; RPS1=''; readonly PS1 PS2\n"
            ),
        };
        script.into_bytes()
    }

    /// The input that runs `command`, or why it cannot be sent.
    pub fn command_line(&self, command: &str) -> Result<Vec<u8>, String> {
        if let Some(bad) = command
            .bytes()
            .find(|&b| (b < 0x20 && b != b'\n' && b != b'\t' && b != 0x1b) || b == 0x7f)
        {
            return Err(format!(
                "command contains control byte 0x{bad:02x}, which the terminal would interpret; \
                 write it with shell/write or as a printf escape"
            ));
        }
        let quoted = command.replace('\'', r"'\''");
        let line = format!(
            "printf '\\033]133;C;{}\\007'; eval '{quoted}'\n",
            self.nonce
        );
        if let Some(long) = line.split('\n').map(str::len).max()
            && long > MAX_LINE_BYTES
        {
            return Err(format!(
                "a line of the command is {long} bytes; the terminal takes at most \
                 {MAX_LINE_BYTES} per line"
            ));
        }
        Ok(line.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_survive_and_control_bytes_are_refused() {
        let integration = Integration::new(ShellKind::Bash);
        let line = integration.command_line("echo 'a b'").expect("line");
        let text = String::from_utf8(line).expect("utf-8");
        assert!(text.ends_with("eval 'echo '\\''a b'\\'''\n"), "{text}");
        assert!(integration.command_line("echo \u{3}").is_err());
        assert!(integration.command_line(&"x".repeat(5000)).is_err());
    }
}
