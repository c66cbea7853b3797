//! Small rendering helpers shared by the reports: markdown tables, number formats, the
//! machine description and the reproduce line.

use std::fmt::Write as _;

/// A markdown table; a column whose header starts with `>` is right-aligned (the `>` is
/// not printed).
pub fn markdown(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let names: Vec<&str> = headers.iter().map(|h| h.trim_start_matches('>')).collect();
    let _ = writeln!(out, "| {} |", names.join(" | "));
    let rules: Vec<&str> = headers
        .iter()
        .map(|h| if h.starts_with('>') { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "| {} |", rules.join(" | "));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

/// Milliseconds: three decimals below 10 ms, one above.
pub fn ms(value: f64) -> String {
    if value.abs() < 10.0 {
        format!("{value:.3} ms")
    } else {
        format!("{value:.1} ms")
    }
}

/// `b / a` as `1.234×`, or `—` when `a` is zero.
pub fn ratio(b: f64, a: f64) -> String {
    if a == 0.0 {
        "—".to_owned()
    } else {
        format!("{:.2}×", b / a)
    }
}

/// A change from `before` to `after` in ms: `−40.8 ms (−25.6%)`.
pub fn change_ms(before: f64, after: f64) -> String {
    let delta = after - before;
    let sign = if delta < 0.0 { "−" } else { "+" };
    let percent = if before == 0.0 {
        String::new()
    } else {
        format!(" ({sign}{:.1}%)", (delta / before * 100.0).abs())
    };
    format!("{sign}{}{percent}", ms(delta.abs()))
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// Bytes as KiB with one decimal.
pub fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

/// CPU count, CPU model and kernel release, as far as `/proc` tells.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("{cpus} CPUs ({model}), Linux {kernel}")
}

/// The command line that reruns a benchmark: this process's own argv up to the benchmark's
/// word `subcommand` (or `rexec bench SUBCOMMAND` when there is none), then `options`, every
/// one spelled out so that changed defaults cannot change the meaning.
pub fn reproduce_line(subcommand: &str, options: Vec<String>) -> String {
    let argv: Vec<String> = std::env::args().collect();
    let mut words: Vec<String> = match argv.iter().position(|a| a == subcommand) {
        Some(i) => argv[..=i].to_vec(),
        None => ["rexec", "bench", subcommand].map(str::to_owned).to_vec(),
    };
    words.extend(options);
    shell_words::join(words)
}

/// The markdown block that ends every report.
pub fn reproduce_block(line: &str) -> String {
    format!("\nReproduce:\n\n```sh\n{line}\n```\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(ms(1.23456), "1.235 ms");
        assert_eq!(ms(159.46), "159.5 ms");
        assert_eq!(change_ms(159.5, 118.7), "−40.8 ms (−25.6%)");
        assert_eq!(ratio(3.0, 1.5), "2.00×");
        let table = markdown(&["a", ">b"], &[vec!["x".into(), "1".into()]]);
        assert_eq!(table, "| a | b |\n| --- | ---: |\n| x | 1 |\n");
    }
}
