//! The child's environment: exactly the request's `env`, unless an `envPolicy` asks to
//! inherit from the server's own environment (upstream's shell-environment policy).

use rexec_protocol::process::{EnvInherit, EnvPolicy};
use std::collections::BTreeMap;
use wildmatch::WildMatchPattern;

/// Variables a `core` policy inherits.
const CORE_VARIABLES: &[&str] = &[
    "HOME", "LOGNAME", "PATH", "SHELL", "USER", "USERNAME", "TMPDIR", "TEMP", "TMP",
];

/// Names dropped unless `ignoreDefaultExcludes` (credentials by naming convention).
const DEFAULT_EXCLUDES: &[&str] = &["*KEY*", "*SECRET*", "*TOKEN*"];

type Pattern = WildMatchPattern<'*', '?'>;

fn patterns(globs: &[impl AsRef<str>]) -> Vec<Pattern> {
    globs
        .iter()
        .map(|glob| Pattern::new_case_insensitive(glob.as_ref()))
        .collect()
}

fn matches_any(patterns: &[Pattern], name: &str) -> bool {
    patterns.iter().any(|p| p.matches(name))
}

/// Build the child environment from the request.
pub fn child_env(
    env: &BTreeMap<String, String>,
    policy: Option<&EnvPolicy>,
    server_env: impl Iterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    let Some(policy) = policy else {
        return env.clone();
    };
    let mut result: BTreeMap<String, String> = match policy.inherit {
        EnvInherit::All => server_env.collect(),
        EnvInherit::Core => server_env
            .filter(|(name, _)| CORE_VARIABLES.contains(&name.as_str()))
            .collect(),
        EnvInherit::None => BTreeMap::new(),
    };
    if !policy.ignore_default_excludes {
        let defaults = patterns(DEFAULT_EXCLUDES);
        result.retain(|name, _| !matches_any(&defaults, name));
    }
    let excludes = patterns(&policy.exclude);
    result.retain(|name, _| !matches_any(&excludes, name));
    result.extend(policy.set.iter().map(|(k, v)| (k.clone(), v.clone())));
    if !policy.include_only.is_empty() {
        let keep = patterns(&policy.include_only);
        result.retain(|name, _| matches_any(&keep, name));
    }
    result.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_env() -> impl Iterator<Item = (String, String)> {
        [
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("API_KEY", "k"),
            ("GitHub_Token", "t"),
            ("EDITOR", "vi"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_to_exact_env() {
        let env = vars(&[("A", "1")]);
        assert_eq!(child_env(&env, None, server_env()), env);
    }

    #[test]
    fn applies_policy_then_overlay() {
        let policy = EnvPolicy {
            inherit: EnvInherit::All,
            ignore_default_excludes: false,
            exclude: vec!["edit*".into()],
            set: vars(&[("X", "set"), ("Y", "set")]),
            include_only: vec![],
        };
        let result = child_env(&vars(&[("Y", "request")]), Some(&policy), server_env());
        assert_eq!(
            result,
            vars(&[
                ("HOME", "/root"),
                ("PATH", "/bin"),
                ("X", "set"),
                ("Y", "request")
            ])
        );
    }

    #[test]
    fn core_and_include_only() {
        let policy = EnvPolicy {
            inherit: EnvInherit::Core,
            ignore_default_excludes: true,
            exclude: vec![],
            set: BTreeMap::new(),
            include_only: vec!["p*".into()],
        };
        assert_eq!(
            child_env(&BTreeMap::new(), Some(&policy), server_env()),
            vars(&[("PATH", "/bin")])
        );
    }
}
