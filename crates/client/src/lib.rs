//! The rexec client library (issue 3).
