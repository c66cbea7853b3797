//! The macros that turn one scenario into tests: [`conformance_test!`] (a rexec test and a
//! codex test from one scenario, its name written once) and [`codex_test!`] (any codex test:
//! generated as `#[ignore]`d outside CI when the kit was built without a codex binary).
//!
//! libtest shows an ignore reason only when it is a literal, so the reasons are literals:
//! the fixed one below, or the `rexec_only("…")` text.

/// `conformance_test!(scenario)` defines `rexec_scenario` and `codex_scenario`, each running
/// `scenario(ctx)` against its server. `conformance_test!(rexec_only("why") scenario)` makes
/// `codex_scenario` an ignored test with `why` (name the rexec extension or flag) as the
/// reason. The older form that names both tests, `scenario => rexec_name, codex_name`, is
/// accepted too.
#[macro_export]
macro_rules! conformance_test {
    (rexec_only($why:literal) $scenario:ident) => {
        $crate::pastey::paste! {
            $crate::conformance_test!(
                rexec_only($why) $scenario => [<rexec_ $scenario>], [<codex_ $scenario>]
            );
        }
    };
    ($scenario:ident) => {
        $crate::pastey::paste! {
            $crate::conformance_test!($scenario => [<rexec_ $scenario>], [<codex_ $scenario>]);
        }
    };
    (rexec_only($why:literal) $scenario:ident => $rexec:ident, $codex:ident) => {
        $crate::conformance_test!(@rexec $scenario => $rexec, Some($why));
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = $why]
        async fn $codex() {
            $crate::harness::run(
                $crate::server::Target::Codex,
                stringify!($codex),
                Some($why),
                $scenario,
            )
            .await;
        }
    };
    ($scenario:ident => $rexec:ident, $codex:ident) => {
        $crate::conformance_test!(@rexec $scenario => $rexec, None);
        $crate::codex_test! {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $codex() {
                $crate::harness::run($crate::server::Target::Codex, stringify!($codex), None, $scenario)
                    .await;
            }
        }
    };
    (@rexec $scenario:ident => $rexec:ident, $only:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $rexec() {
            $crate::harness::run($crate::server::Target::Rexec, stringify!($rexec), $only, $scenario)
                .await;
        }
    };
}

/// Wraps one codex test: `codex_test! { #[tokio::test] async fn codex_x() { … } }`. When the
/// kit was built outside CI and found no codex binary (`build.rs`), the test is generated
/// `#[ignore]`d with the reason; otherwise it is left as written (and fails if the binary is
/// gone by the time it runs).
#[cfg(codex_missing)]
#[macro_export]
macro_rules! codex_test {
    (#[$test:meta] $($item:tt)*) => {
        #[$test]
        #[ignore = "codex exec-server not found when rexec-testkit was built: set REXEC_CODEX_BIN or run scripts/install-codex"]
        $($item)*
    };
}

/// Wraps one codex test: `codex_test! { #[tokio::test] async fn codex_x() { … } }`. When the
/// kit was built outside CI and found no codex binary (`build.rs`), the test is generated
/// `#[ignore]`d with the reason; otherwise it is left as written (and fails if the binary is
/// gone by the time it runs).
#[cfg(not(codex_missing))]
#[macro_export]
macro_rules! codex_test {
    ($($item:tt)*) => {
        $($item)*
    };
}
