//! The sandbox policy decoder (`process/start` and every `fs/*` request's `sandbox`) on
//! arbitrary JSON, with a fixed cwd and environment: it never panics, and every refusal
//! is -32602 naming the member at fault. Resolution only reads the file system
//! (canonicalize, `.git` files); nothing is spawned or written.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rexec_server::fuzzing::resolve_sandbox_policy;
use std::collections::BTreeMap;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(sandbox) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let env = BTreeMap::from([("TMPDIR".to_owned(), "/tmp".to_owned())]);
    for cwd in [Some(Path::new("/tmp")), None] {
        match resolve_sandbox_policy(&sandbox, cwd, &env) {
            Ok(Some(plan)) => {
                if let Some(rules) = &plan.file_system {
                    for path in rules
                        .read
                        .iter()
                        .chain(&rules.write)
                        .chain(&rules.protected)
                    {
                        assert!(path.is_absolute(), "{path:?} in {plan:?}");
                    }
                    for path in &rules.protected {
                        assert!(rules.write.iter().any(|root| path.starts_with(root)));
                    }
                }
            }
            Ok(None) => {}
            Err(error) => {
                assert_eq!(error.code, -32602, "{error}");
                assert!(error.message.contains("sandbox"), "{error}");
            }
        }
    }
});
