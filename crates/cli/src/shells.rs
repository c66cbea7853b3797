//! `rexec shells`: our principal's named shells on the server, as a table.

use crate::connect::ServerArgs;
use crate::duration::format_short;
use rexec_client::{ShellEntry, ShellKind};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ShellsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn run(args: ShellsArgs) -> anyhow::Result<i32> {
    let client = args.server.connect("rexec-shells").await?;
    let shells = client
        .shells()
        .await
        .map_err(|err| args.server.explain(err, "list the named shells"))?;
    client.close().await;
    print!("{}", table(&shells));
    Ok(0)
}

const HEADER: [&str; 6] = ["NAME", "SHELL", "CWD", "IDLE", "RUNNING", "QUEUED"];
/// Longer running command lines are cut to this many characters.
const COMMAND_CHARS: usize = 40;

/// One line per shell, columns aligned; the header alone when there are none.
pub fn table(shells: &[ShellEntry]) -> String {
    let mut rows = vec![HEADER.map(str::to_owned)];
    rows.extend(shells.iter().map(|entry| {
        [
            entry.name.clone(),
            kind_name(entry.shell).to_owned(),
            entry
                .cwd
                .as_ref()
                .map_or("-".to_owned(), |cwd| cwd.display().to_string()),
            format_short(Duration::from_millis(entry.idle_ms)),
            entry.running.as_ref().map_or("-".to_owned(), |running| {
                format!(
                    "{} ({})",
                    one_line(&running.command),
                    format_short(Duration::from_millis(running.running_ms))
                )
            }),
            entry.queued.to_string(),
        ]
    }));
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn kind_name(kind: ShellKind) -> &'static str {
    match kind {
        ShellKind::Bash => "bash",
        ShellKind::Sh => "sh",
        ShellKind::Zsh => "zsh",
    }
}

/// The command's first line, cut to [`COMMAND_CHARS`], with `…` where something was left out.
fn one_line(command: &str) -> String {
    let first = command.lines().next().unwrap_or("");
    let mut line: String = first.chars().take(COMMAND_CHARS).collect();
    if line.len() < command.trim_end().len() {
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use rexec_client::RunningCommand;

    #[test]
    fn columns_line_up_and_long_commands_are_cut() {
        let shells = [
            ShellEntry {
                name: "build".into(),
                shell: ShellKind::Bash,
                cwd: Some("/tmp".into()),
                idle_ms: 187_000,
                running: None,
                queued: 0,
            },
            ShellEntry {
                name: "s".into(),
                shell: ShellKind::Zsh,
                cwd: None,
                idle_ms: 20,
                running: Some(RunningCommand {
                    command_id: "c1".into(),
                    command: format!("sleep 30 && {}\necho two", "x".repeat(50)),
                    running_ms: 4_200,
                }),
                queued: 2,
            },
        ];
        let expected = "\
NAME   SHELL  CWD   IDLE   RUNNING                                         QUEUED
build  bash   /tmp  3m07s  -                                               0
s      zsh    -     20ms   sleep 30 && xxxxxxxxxxxxxxxxxxxxxxxxxxxx… (4s)  2
";
        assert_eq!(table(&shells), expected);
    }
}
